"""The creation handler after an operator restart (Kopf's on.resume runs it again for every live job): it makes the
trainer Job only the first time. A job stopped on a server without Job suspend has no Job; re-creating it on resume
is the lifecycle's (a Resumed event), never a second JobCreated (seen after a kill -9 while a resume was pending;
tests/real/test_lifecycle_real.py shows it on 1.20)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from align_operator.handlers import reconcile as handler
from align_operator.kube import JOBS
from align_operator.settings import Settings


class Recorder:
    """A Kubernetes client that records creates and knows no object (every create succeeds)."""

    def __init__(self) -> None:
        self.created: list[tuple[str, str]] = []

    async def create_or_get(self, resource: Any, body: dict[str, Any], namespace: str) -> tuple[dict[str, Any], bool]:
        self.created.append((resource.plural, body["metadata"]["name"]))
        return body, True


def body(status: dict[str, Any], **run_policy: Any) -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
            "metadata": {"name": "r", "namespace": "ns", "uid": "u-1", "generation": 2},
            "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "d.jsonl"}},
                     "resources": {"gpusPerNode": 0}, "runPolicy": run_policy}, "status": status}


def run(status: dict[str, Any], monkeypatch: pytest.MonkeyPatch, **run_policy: Any) -> tuple[Recorder, list[str]]:
    events: list[str] = []
    monkeypatch.setattr(kopf, "event", lambda *a, reason, **k: events.append(reason))
    client = Recorder()
    memo = SimpleNamespace(client=client, settings=Settings())
    patch = SimpleNamespace(status={})
    obj = body(status, **run_policy)
    asyncio.run(handler._reconcile(obj, dict(status), "r", "ns", 2, patch, memo, SimpleNamespace(
        info=lambda *_: None, warning=lambda *_: None)))
    return client, events


def test_the_first_reconcile_creates_the_job_and_posts_one_job_created(monkeypatch: pytest.MonkeyPatch) -> None:
    client, events = run({}, monkeypatch)
    assert (JOBS.plural, "r-trainer") in client.created and events.count("JobCreated") == 1


def test_a_restart_while_a_resume_is_pending_leaves_the_job_to_the_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    # stopped on 1.20 (Job deleted), resume asked, operator restarted before the status task re-created the Job
    client, events = run({"jobName": "r-trainer", "phase": "Suspended"}, monkeypatch, suspend=False)
    assert (JOBS.plural, "r-trainer") not in client.created
    assert "JobCreated" not in events


@pytest.mark.parametrize("status,run_policy,creates", [
    ({}, {}, True),
    ({}, {"suspend": True}, False),                         # created suspended: the Job comes on resume
    ({"usage": {"budgetUsed": 1.2}}, {}, False),            # budget used up before the restart
    ({"jobName": "r-trainer"}, {}, False),                  # made once already
])
def test_creates_job(status: dict[str, Any], run_policy: dict[str, Any], creates: bool) -> None:
    assert handler.creates_job({"runPolicy": run_policy}, status) is creates
