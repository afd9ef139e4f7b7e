"""Deleting never waits for the operator: no handler asks Kopf for a finalizer, and the status daemon ends itself
when its AlignmentJob is deleted (Kopf only stops daemons of objects that carry its finalizer)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from align_operator.handlers import track
from align_operator.handlers.setup import Wakeups
from align_operator.settings import Settings


def test_no_handler_of_the_operator_requires_a_finalizer() -> None:
    from align_operator import main  # noqa: F401  (registers the handlers)
    registry = kopf.get_default_registry()
    spawning = registry._spawning.get_all_handlers()
    assert [h.id for h in spawning] == ["track"]
    assert not any(h.requires_finalizer for h in [*spawning, *registry._changing.get_all_handlers()])


class _Running:
    def __bool__(self) -> bool:  # kopf.DaemonStopped is falsy until the daemon is asked to stop
        return False


def test_the_status_daemon_ends_when_its_alignmentjob_is_deleted() -> None:
    memo = kopf.Memo(settings=Settings(status_interval_seconds=3600, scrape_interval_seconds=3600),
                     wakeups=Wakeups(), client=None)
    body: dict[str, Any] = {"metadata": {"name": "j", "namespace": "ns"}, "status": {"phase": "Running"}}

    async def scenario() -> None:
        daemon = asyncio.create_task(track.track(
            body=body, spec={}, meta=body["metadata"], name="j", namespace="ns", stopped=_Running(), memo=memo,
            logger=None, index_jobs={}, index_pods={}))
        await asyncio.sleep(0.05)
        assert not daemon.done()
        await track.end_on_delete(type="MODIFIED", name="j", namespace="ns", memo=memo)   # only deletion ends it
        await asyncio.sleep(0.05)
        assert not daemon.done()
        await track.end_on_delete(type="DELETED", name="j", namespace="ns", memo=memo)
        await asyncio.wait_for(daemon, timeout=5)
        assert not memo.wakeups.is_gone(("ns", "j"))       # a new object of that name gets a fresh daemon
    asyncio.run(scenario())

