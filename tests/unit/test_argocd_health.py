"""The Argo CD health check (deploy/argocd/health.lua) on sample AlignmentJobs, in Lua 5.1 like Argo CD's
gopher-lua: every Phase maps to the right health status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from align_api.constants import Phase

lupa = pytest.importorskip("lupa.lua51", reason="lupa (dev extra) is not installed")

REPO = Path(__file__).resolve().parents[2]
SCRIPT = (REPO / "deploy" / "argocd" / "health.lua").read_text()

#: The contract of issue 6: Healthy when Succeeded, Progressing while Pending/Running/Queued (and Waiting for an
#: upstream job), Degraded when Failed, Suspended when suspended.
EXPECTED = {
    Phase.PENDING: "Progressing",
    Phase.WAITING: "Progressing",
    Phase.QUEUED: "Progressing",
    Phase.RUNNING: "Progressing",
    Phase.SUSPENDED: "Suspended",
    Phase.SUCCEEDED: "Healthy",
    Phase.FAILED: "Degraded",
    Phase.CANCELLED: "Suspended",
}


def health(obj: dict[str, Any]) -> dict[str, str]:
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


def job(phase: str | None = None, *, generation: int = 1, observed: int | None = 1, suspend: bool = False,
        **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                           "metadata": {"name": "dpo-run", "namespace": "team-a", "generation": generation},
                           "spec": {"algorithm": "dpo", "runPolicy": {"suspend": suspend}}}
    if phase is not None:
        obj["status"] = {"phase": phase, "observedGeneration": observed, **status}
    return obj


def test_every_phase_is_covered() -> None:
    assert set(EXPECTED) == set(Phase)


@pytest.mark.parametrize("phase", list(Phase))
def test_phase_maps_to_health(phase: Phase) -> None:
    assert health(job(phase.value))["status"] == EXPECTED[phase]


def test_no_status_yet_is_progressing() -> None:
    result = health(job())
    assert result["status"] == "Progressing" and "operator" in result["message"]


def test_running_message_shows_progress() -> None:
    result = health(job("Running", progress={"step": 40, "totalSteps": 100, "percent": 40.0}))
    assert result == {"status": "Progressing", "message": "Training (step 40/100, 40%)"}


def test_failed_message_carries_the_reason() -> None:
    result = health(job("Failed", lastError={"reason": "Diverged", "message": "loss=nan at step 12"}))
    assert result == {"status": "Degraded", "message": "Diverged: loss=nan at step 12"}
    from_condition = health(job("Failed", conditions=[{"type": "Failed", "status": "True", "reason": "OOMKilled",
                                                        "message": "trainer pod was OOM killed"}]))
    assert from_condition["message"] == "Failed: trainer pod was OOM killed"


def test_queued_message_comes_from_its_condition() -> None:
    result = health(job("Queued", conditions=[{"type": "Queued", "status": "True", "reason": "QueuedByKueue",
                                                "message": "waiting for quota in queue gpu-a100"}]))
    assert result == {"status": "Progressing", "message": "waiting for quota in queue gpu-a100"}


def test_suspend_is_suspended_only_once_the_operator_says_the_pods_stopped() -> None:
    stopping = [{"type": "Running", "status": "True", "reason": "Suspending",
                 "message": "Stopping to suspend: 1 trainer pod(s) checkpointing and exiting"}]
    result = health(job("Running", suspend=True, generation=2, observed=2, conditions=stopping))
    assert result["status"] == "Progressing" and "checkpointing" in result["message"]
    assert health(job("Suspended", suspend=True, generation=2, observed=2))["status"] == "Suspended"


def test_terminal_phases_win_over_suspend() -> None:
    assert health(job("Succeeded", suspend=True))["status"] == "Healthy"
    assert health(job("Failed", suspend=True))["status"] == "Degraded"


def test_unknown_phase_is_unknown() -> None:
    assert health(job("Exploded"))["status"] == "Unknown"
