"""The console's HTTP API over a stand-in for the kubernetes client (ClusterSource's reads are the real ones):
paging, curves from a published metrics.jsonl or else the trainer log, evaluation answers, compare, errors,
read-only routes, the loopback Host check and the page shown when the charting library was not vendored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from align_operator.client import ClusterError, JobNotFound
from align_operator.console import server
from align_operator.console.sources import ClusterSource

LOG = ["INFO starting", "step 1/4 (25%) loss=0.7 eta 3s", "step 2/4 (50%) loss=0.6 eta 2s",
       "step 2/4 (50%) eval_loss=0.65 eta 2s"]


class FakeClient:
    """The AlignClient methods ClusterSource calls, over in-memory objects."""

    namespace = "ns"
    host = "https://cluster"

    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs}
        self.list_calls = self.log_calls = 0

    def list(self, *, all_namespaces: bool = False, label_selector: str | None = None,
             namespace: str | None = None) -> list[dict[str, Any]]:
        self.list_calls += 1
        if namespace == "forbidden":
            raise ClusterError('alignmentjobs.align.dev is forbidden: User "u" cannot list', 403)
        key, _, value = (label_selector or "").partition("=")
        return [o for (ns, _), o in self.objs.items() if (all_namespaces or ns == namespace)
                and (not key or (o["metadata"].get("labels") or {}).get(key) == value)]

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        try:
            return self.objs[(namespace or self.namespace, name)]
        except KeyError:
            raise JobNotFound(f'alignmentjob "{name}" not found', 404) from None

    def events(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [{"reason": "Created", "message": "made", "lastTimestamp": "2026-01-01T00:00:01Z",
                 "involvedObject": {"kind": "AlignmentJob", "name": name}}]

    def trainer_pods(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [{"metadata": {"name": f"{name}-trainer-0"}}]

    def logs(self, pod: str, namespace: str | None = None, **_: Any) -> Iterator[str]:
        self.log_calls += 1
        return iter(LOG)


def obj(name: str, phase: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"run": name}},
            "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}, "hyperparameters": {"beta": 0.1}},
            "status": {"phase": phase, **status}}


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "loss": 0.7, "learning_rate": 1e-3}, {"step": 2, "loss": float("nan")}]) + "\n{torn")
    (tmp_path / "report.md").write_text("# report")
    # Python's json writes NaN (a correlation over constant rewards); browsers' JSON.parse rejects it
    (tmp_path / "evaluation.json").write_text(json.dumps({"kind": "policy", "status": {"winRate": 1.0,
                                                                                       "lengthRewardCorrelation": float("nan")}, "passed": True,
        "gates": [], "samples": [{"prompt": "p", "policy": "Sure!", "reference": "", "policy_reward": 1.0,
                                  "reference_reward": 0.0}]}))
    return tmp_path


@pytest_asyncio.fixture()
async def client(run_dir: Path) -> AsyncIterator[TestClient]:
    fake = FakeClient([
        obj("done", "Succeeded", artifacts={"metrics": str(run_dir / "metrics.jsonl"),
                                            "report": f"file://{run_dir}/report.md"}),
        obj("live", "Running", artifacts={"metrics": "pvc://vol/live/metrics.jsonl"}),
        obj("broken", "Failed", lastError={"reason": "TrainerError", "message": "no such file"})])
    app = server.make_app(ClusterSource(fake, ttl=60), allowed_hosts=server.loopback_hosts("127.0.0.1"))
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        c.fake = fake
        yield c


@pytest.mark.asyncio
async def test_jobs_api_pages_filters_and_caches_the_list(client: TestClient) -> None:
    got = await (await client.get("/api/jobs?limit=2")).json()
    assert got["total"] == 3 and len(got["items"]) == 2 and got["phases"] == {"Succeeded": 1, "Running": 1, "Failed": 1}
    failed = await (await client.get("/api/jobs?phase=Failed")).json()
    assert [r["name"] for r in failed["items"]] == ["broken"] and failed["items"][0]["reason"] == "TrainerError"
    assert client.fake.list_calls == 1  # three tabs polling cost one list per ttl
    labelled = await (await client.get("/api/jobs?label=run%3Dlive")).json()
    assert [r["name"] for r in labelled["items"]] == ["live"]
    assert (await client.get("/api/jobs?offset=x")).status == 400
    denied = await client.get("/api/jobs?namespace=forbidden")
    assert denied.status == 403 and "forbidden" in (await denied.json())["error"]


@pytest.mark.asyncio
async def test_job_curves_come_from_metrics_jsonl_else_from_the_trainer_log(client: TestClient) -> None:
    done = await (await client.get("/api/jobs/ns/done")).json()
    assert done["curves"]["source"] == "metrics.jsonl"
    assert done["curves"]["series"]["loss"] == [0.7, None] and done["curves"]["nonfinite"] == {"loss": 1}
    assert [e["reason"] for e in done["timeline"]] == ["Created"]
    live_response = await client.get("/api/jobs/ns/live")
    assert "NaN" not in await live_response.text()
    live = await live_response.json()
    assert live["curves"]["source"] == "trainer log" and live["curves"]["pod"] == "live-trainer-0"
    assert live["curves"]["steps"] == [1, 2] and live["curves"]["series"]["eval_loss"] == [None, 0.65]
    assert "pvc://vol/live/metrics.jsonl" in live["curves"]["note"]  # why the published file was not used
    await client.get("/api/jobs/ns/live")
    assert client.fake.log_calls == 1  # read once per ttl, however many pages poll it
    assert (await client.get("/api/jobs/ns/nope")).status == 404


@pytest.mark.asyncio
async def test_evaluation_compare_and_logs(client: TestClient) -> None:
    ev = await (await client.get("/api/jobs/ns/done/evaluation")).json()
    assert ev["problem"] is None and ev["samples"][0]["gain"] == 1.0
    assert ev["summary"] == {"winRate": 1.0, "lengthRewardCorrelation": None}
    missing = await (await client.get("/api/jobs/ns/broken/evaluation")).json()
    assert "no evaluation report" in missing["problem"]
    cmp = await (await client.get("/api/compare?job=ns/done&job=ns/live")).json()
    assert cmp["jobs"] == ["ns/done", "ns/live"] and cmp["diff"] == []
    assert set(cmp["curves"]) == {"ns/done", "ns/live"}
    assert (await client.get("/api/compare?job=ns/done")).status == 400
    logs = await client.get("/jobs/ns/live/logs")
    assert "step 2/4" in await logs.text()


@pytest.mark.asyncio
async def test_read_only_and_loopback_only(client: TestClient) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert (await client.request(method, "/api/jobs")).status == 405
    assert (await client.get("/healthz", headers={"Host": "attacker.example:80"})).status == 421
    assert (await client.get("/healthz", headers={"Host": "localhost:8765"})).status == 200
    assert server.loopback_hosts("0.0.0.0") is None  # in a pod behind a Service: any Host


@pytest.mark.asyncio
async def test_pages_and_the_missing_library_page(client: TestClient, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    page = await client.get("/jobs/ns/done")
    if server.missing_assets():
        pytest.skip("uPlot not vendored here (scripts/vendor_console_assets.sh)")
    assert page.status == 200 and "/static/vendor/uPlot.iife.min.js" in await page.text()
    assert (await client.get("/static/vendor/uPlot.iife.min.js")).status == 200
    monkeypatch.setattr(server, "STATIC", tmp_path)
    broken = await client.get("/")
    assert broken.status == 503 and "vendor_console_assets.sh" in await broken.text()
