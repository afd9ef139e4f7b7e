"""Usage accounting from pods' running times, and budgets (status/usage.py)."""

from __future__ import annotations

from typing import Any

from align_operator.status.lifecycle import Want, want
from align_operator.status.usage import Budget, account, describe, exhausted, to_warn

T0 = "2026-01-01T00:00:00Z"


def at(seconds: int) -> str:
    return f"2026-01-01T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"


def pod(uid: str, start: int, end: int | None = None, *, gpus: int = 2, index: str = "0") -> dict[str, Any]:
    state = {"running": {"startedAt": at(start)}} if end is None else \
        {"terminated": {"startedAt": at(start), "finishedAt": at(end), "exitCode": 0}}
    return {"metadata": {"uid": uid, "annotations": {"batch.kubernetes.io/job-completion-index": index}},
            "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": "Running" if end is None else "Failed", "containerStatuses": [{"state": state}]}}


def test_running_pods_count_running_time_times_gpus_and_rank0_is_the_wall_clock() -> None:
    usage = account(None, [pod("a", 0), pod("b", 0, index="1")], at(1800), Budget())
    assert usage["gpuHours"] == 2.0 and usage["podHours"] == 1.0 and usage["wallClockMinutes"] == 30.0


def test_a_paused_pod_is_settled_once_and_survives_its_deletion_and_a_restart() -> None:
    budget = Budget(max_gpu_hours=4)
    first = account(None, [pod("a", 0)], at(600), budget)
    ended = account(first, [pod("a", 0, 900)], at(1000), budget)        # SIGTERM at 900 s; pod still stored
    assert ended["gpuHours"] == 0.5 and ended["running"] == [] and ended["counted"] == ["a"]
    again = account(ended, [pod("a", 0, 900)], at(2000), budget)         # not counted twice
    assert again["gpuHours"] == 0.5
    gone = account(again, [], at(3000), budget)                          # deleted: its time stays
    assert gone["gpuHours"] == 0.5 and gone["counted"] == []
    resumed = account(gone, [pod("b", 3600)], at(3600 + 1800), budget)   # after a pause: pauses are not counted
    assert resumed["gpuHours"] == 1.5 and resumed["budgetUsed"] == 0.375


def test_a_pod_deleted_while_no_operator_ran_counts_until_last_seen() -> None:
    seen = account(None, [pod("a", 0)], at(360), Budget())
    assert account(seen, [], at(7200), Budget())["gpuHours"] == 0.2


def test_cpu_jobs_spend_pod_hours_and_the_tightest_budget_decides() -> None:
    cpu = Budget(max_gpu_hours=1, max_wall_clock_minutes=120, gpu_job=False)
    usage = account(None, [pod("a", 0, gpus=0)], at(2700), cpu)
    assert usage["gpuHours"] == 0 and usage["budgetUsed"] == 0.75                 # 0.75 pod-hours of 1
    assert Budget.from_spec({"resources": {"gpusPerNode": 0}, "runPolicy": {"maxGpuHours": 1}}).gpu_job is False
    wall = Budget(max_gpu_hours=100, max_wall_clock_minutes=30)
    assert account(None, [pod("a", 0)], at(1800), wall)["budgetUsed"] == 1.0
    assert "0.75 of 1 pod-hours" in describe(usage, cpu)
    assert account(None, [pod("a", 0)], at(60), Budget()).get("budgetUsed") is None


def test_warning_once_at_80_percent_rearmed_by_a_raised_limit_and_exhaustion_pauses() -> None:
    budget = Budget(max_gpu_hours=1)
    below = account(None, [pod("a", 0, gpus=1)], at(2800), budget)
    assert not to_warn(below)
    crossing = account(below, [pod("a", 0, gpus=1)], at(2900), budget)
    assert to_warn(crossing)
    crossing["warned"] = True                                                       # the operator posted it
    assert not to_warn(account(crossing, [pod("a", 0, gpus=1)], at(3000), budget))
    spent = account(crossing, [pod("a", 0, gpus=1)], at(3600), budget)
    assert exhausted(spent) and want({}, exhausted(spent)) == Want.BUDGET
    assert want({"runPolicy": {"suspend": True}}, True) == Want.SUSPEND             # the user's reason wins
    raised = account(spent, [pod("a", 0, 3600, gpus=1)], at(3700), Budget(max_gpu_hours=2))
    assert not exhausted(raised) and raised["warned"] is False and want({}, exhausted(raised)) == Want.RUN


def test_usage_is_exported_from_the_stored_status_and_dropped_with_the_job() -> None:
    import asyncio

    from prometheus_client import REGISTRY, generate_latest

    from align_operator.handlers.track import phase_metric

    status = {"phase": "Suspended", "usage": {"gpuHours": 3.5, "podHours": 1.75, "budgetUsed": 1.0}}
    asyncio.run(phase_metric(type="MODIFIED", status=status, name="spent", namespace="team"))
    text = generate_latest(REGISTRY).decode()
    assert 'align_operator_job_gpu_seconds{name="spent",namespace="team"} 12600.0' in text
    assert 'align_operator_job_budget_used_ratio{name="spent",namespace="team"} 1.0' in text
    asyncio.run(phase_metric(type="DELETED", status=status, name="spent", namespace="team"))
    assert 'name="spent"' not in generate_latest(REGISTRY).decode()


def test_namespace_defaults_apply_and_the_stricter_limit_wins_with_its_source() -> None:
    from align_operator.status.usage import namespace_limits
    defaults, problems = namespace_limits({"data": {"maxGpuHours": "2", "maxWallClockMinutes": "90"}})
    assert defaults == {"maxGpuHours": 2.0, "maxWallClockMinutes": 90.0} and problems == []
    # no runPolicy: the namespace's limits, named as such
    budget = Budget.from_spec({}, defaults)
    assert (budget.max_gpu_hours, budget.max_wall_clock_minutes) == (2.0, 90.0)
    assert budget.limits() == [{"name": "maxGpuHours", "value": 2.0, "source": "ConfigMap/align-defaults"},
                               {"name": "maxWallClockMinutes", "value": 90.0, "source": "ConfigMap/align-defaults"}]
    # a job may tighten a namespace limit (its own applies) but not loosen it (the namespace's applies)
    budget = Budget.from_spec({"runPolicy": {"maxGpuHours": 1, "maxWallClockMinutes": 600}}, defaults)
    assert (budget.max_gpu_hours, budget.max_wall_clock_minutes) == (1.0, 90.0)
    assert {l["name"]: l["source"] for l in budget.limits()} == {"maxGpuHours": "spec.runPolicy",
                                                                 "maxWallClockMinutes": "ConfigMap/align-defaults"}
    # usage counts against it, the pause message names where the limit came from, status shows it
    spent = account(None, [pod("a", 0, gpus=1)], at(5400), budget)
    assert exhausted(spent) and spent["limits"] == budget.limits()
    assert "(ConfigMap/align-defaults maxWallClockMinutes)" in describe(spent, budget)
    assert "(runPolicy.maxGpuHours)" in describe(spent, budget)
    assert Budget.from_spec({"runPolicy": {"maxGpuHours": 3}}, None).limits() == [
        {"name": "maxGpuHours", "value": 3.0, "source": "spec.runPolicy"}]


def test_a_bad_namespace_default_is_named_and_ignored() -> None:
    from align_operator.status.usage import namespace_limits
    limits, problems = namespace_limits({"data": {"maxGpuHours": "lots", "maxWallClockMinutes": "-5",
                                                  "maxGPUHours": "1"}})
    assert limits == {}
    assert problems == ["data.maxGPUHours: unknown key (known: maxGpuHours, maxWallClockMinutes)",
                        "data.maxGpuHours: 'lots' is not a positive number",
                        "data.maxWallClockMinutes: '-5' is not a positive number"]
    assert namespace_limits(None) == ({}, [])


def test_namespace_defaults_are_read_once_per_interval_and_a_bad_value_is_warned_once(monkeypatch: Any) -> None:
    import asyncio
    from types import SimpleNamespace

    import kopf

    from align_operator.handlers.lifecycle import NamespaceDefaults

    stored = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "align-defaults", "namespace": "ml", "resourceVersion": "1"},
              "data": {"maxGpuHours": "8", "maxWallClockMinutes": "soon"}}
    reads: list[str] = []
    warnings: list[str] = []

    class Client:
        async def get_or_none(self, resource: Any, name: str, namespace: str) -> dict[str, Any] | None:
            reads.append(f"{namespace}/{name}")
            return stored if namespace == "ml" else None

    monkeypatch.setattr(kopf, "event", lambda obj, *, type, reason, message: warnings.append(f"{reason}: {message}"))
    log = SimpleNamespace(warning=lambda *_: None)
    defaults = NamespaceDefaults(ttl=3600)

    async def scenario() -> None:
        assert await defaults.get(Client(), "ml", log) == {"maxGpuHours": 8.0}
        assert await defaults.get(Client(), "ml", log) == {"maxGpuHours": 8.0}      # cached: no second read
        assert await defaults.get(Client(), "other", log) == {}
        defaults.ttl = 0
        assert await defaults.get(Client(), "ml", log) == {"maxGpuHours": 8.0}      # read again, warned once
        stored["metadata"]["resourceVersion"] = "2"                                   # edited, still wrong
        await defaults.get(Client(), "ml", log)
    asyncio.run(scenario())
    assert reads == ["ml/align-defaults", "other/align-defaults", "ml/align-defaults", "ml/align-defaults"]
    assert warnings == ["InvalidNamespaceDefaults: ignored: data.maxWallClockMinutes: 'soon' is not a positive "
                        "number"] * 2
