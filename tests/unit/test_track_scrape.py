"""handlers/track.scrape over HTTP: one /metrics text parsed once, each reader given the families it needs. The
exposition carries the same names in several families (a loss gauge, a checkpoint's loss, the generic metric series,
a warning set and one cleared) with different numbers, so a value read from the wrong family, or a reader handed an
already consumed parse, gives a different answer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import REGISTRY

from align_operator.handlers.track import scrape

SAVED = 1767225600  # 2026-01-01T00:00:00Z
EXPOSITION = f"""\
# HELP align_trainer_step Optimizer step.
# TYPE align_trainer_step gauge
align_trainer_step{{job="j"}} 8.0
# TYPE align_trainer_total_steps gauge
align_trainer_total_steps{{job="j"}} 20.0
# TYPE align_trainer_loss gauge
align_trainer_loss{{job="j",split="train"}} 0.5
align_trainer_loss{{job="j",split="eval"}} 0.75
# TYPE align_trainer_metric gauge
align_trainer_metric{{job="j",name="objective_kl",split="train"}} 0.02
# TYPE align_trainer_checkpoint gauge
align_trainer_checkpoint{{job="j",step="4"}} {SAVED - 60}.0
align_trainer_checkpoint{{job="j",step="8"}} {SAVED}.0
# TYPE align_trainer_checkpoint_metric gauge
align_trainer_checkpoint_metric{{job="j",name="loss",step="4"}} 0.9
align_trainer_checkpoint_metric{{job="j",name="loss",step="8"}} 0.125
align_trainer_checkpoint_metric{{job="j",name="eval_winrate",step="8"}} 0.6
# TYPE align_trainer_warning gauge
align_trainer_warning{{job="j",message="every reward 0: 'A: bowling' vs 'A'",reason="NoLearningSignal"}} 1.0
align_trainer_warning{{job="j",message="cleared",reason="Other"}} 0.0
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{{generation="0"}} 3.0
"""


async def serve(body: str, status: int = 200) -> tuple[web.AppRunner, int]:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/plain")
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@pytest_asyncio.fixture
async def memo() -> AsyncIterator[SimpleNamespace]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        yield SimpleNamespace(http=http, scrapes=asyncio.Semaphore(1))


def scrapes(result: str) -> float:
    return REGISTRY.get_sample_value("align_operator_trainer_scrapes_total", {"result": result}) or 0.0


@pytest.mark.asyncio
async def test_one_parse_feeds_progress_checkpoints_and_warnings(memo: SimpleNamespace) -> None:
    runner, port = await serve(EXPOSITION)
    try:
        ok = scrapes("ok")
        got = await scrape(memo, ("127.0.0.1", port, "/metrics"))  # type: ignore[arg-type]
    finally:
        await runner.cleanup()
    assert got is not None and scrapes("ok") == ok + 1
    values, index, warnings = got
    assert values == {"step": 8.0, "total_steps": 20.0, "loss": 0.5, "eval_loss": 0.75, "objective_kl": 0.02}
    assert index == [{"step": 4, "time": "2025-12-31T23:59:00Z", "metrics": {"loss": 0.9}},
                     {"step": 8, "time": "2026-01-01T00:00:00Z", "metrics": {"loss": 0.125},
                      "evaluation": {"eval_winrate": 0.6}}]
    assert warnings == {"NoLearningSignal": "every reward 0: 'A: bowling' vs 'A'"}


@pytest.mark.asyncio
@pytest.mark.parametrize("text, status, outcome", [('align_trainer_step{job="j" 8\n', 200, "unparseable"),
                                                    (EXPOSITION, 500, "http_error")])
async def test_an_unparseable_or_failed_scrape_is_counted_and_gives_nothing(memo: SimpleNamespace, text: str,
                                                                            status: int, outcome: str) -> None:
    runner, port = await serve(text, status=status)
    try:
        before = scrapes(outcome)
        assert await scrape(memo, ("127.0.0.1", port, "/metrics")) is None  # type: ignore[arg-type]
        assert scrapes(outcome) == before + 1
    finally:
        await runner.cleanup()
