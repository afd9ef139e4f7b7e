"""The console's pure parts: curves from the trainer's progress lines and metrics.jsonl records, the jobs list's
paging and filters, the timeline, the spec diff and the evaluation view."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

from align_operator.console import series, views
from align_trainer.callbacks import progress_line

NOW = datetime(2026, 1, 2, tzinfo=timezone.utc)


def test_progress_lines_as_the_trainer_prints_them_are_read_back() -> None:
    train = {"loss": 0.61234, "grad_norm": 0.5, "rewards/margins": -0.4217, "rewards/accuracies": 1.0}
    evals = {"eval_loss": 0.25, "eval_rewards/accuracies": 0.75}
    lines = ["2026-01-01 INFO align_trainer: data: 64 train rows",
             progress_line(3, 16, train, start=0.0, start_step=0),
             progress_line(3, 16, evals, start=None, start_step=0),
             progress_line(4, 16, {"loss": float("nan")}, start=None, start_step=0),
             "warnings.warn(step 5/16 is not a progress line"]
    records = series.records_from_log(lines)
    assert [r["step"] for r in records] == [3, 4]
    assert set(records[0]) == {"step", *train, *evals}  # the train and eval lines of step 3 merge
    for key, value in {**train, **evals}.items():
        assert records[0][key] == pytest.approx(value, rel=1e-3)  # printed with 4 significant digits
    assert math.isnan(records[1]["loss"])


def test_table_aligns_keys_on_steps_and_counts_nonfinite_values() -> None:
    curves = series.table([
        {"step": 1, "time": 5.0, "epoch": 0.1, "loss": 0.7},
        {"step": 1, "eval_loss": 0.8},
        {"step": 2, "loss": float("nan"), "note": "text is not a curve"},
        {"step": 3, "loss": "Infinity", "learning_rate": 1e-3},
        {"step": 2, "loss": 0.5},  # a resumed run logs step 2 again: the later value wins
        {"loss": 1.0},             # no step: not on the axis
    ])
    assert curves["steps"] == [1, 2, 3]
    assert curves["series"] == {"loss": [0.7, 0.5, None], "eval_loss": [0.8, None, None],
                                "learning_rate": [None, None, 1e-3]}
    assert curves["nonfinite"] == {"loss": 1}
    assert series.at_step(curves, 1) == {"loss": 0.7, "eval_loss": 0.8}
    assert series.at_step(curves, 9) == {}


def job(name: str, phase: str | None, created: str, **status: object) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created, "labels": {"team": "a"}},
            "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}},
            "status": {**({"phase": phase} if phase else {}), **status}}


def test_jobs_page_is_newest_first_filtered_and_paged() -> None:
    objs = [job(f"j{i:04d}", "Failed" if i % 10 == 0 else "Running", f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z")
            for i in range(1000)]
    first = views.page(objs, limit=50, now=NOW)
    assert first["total"] == 1000 and len(first["items"]) == 50
    assert [r["name"] for r in first["items"][:2]] == ["j0999", "j0998"]
    assert first["phases"] == {"Running": 900, "Failed": 100}
    failed = views.page(objs, phase="failed", offset=90, limit=50, now=NOW)
    assert failed["total"] == 100 and len(failed["items"]) == 10
    assert {r["phase"] for r in failed["items"]} == {"Failed"}
    assert views.page(objs, limit=10**6, now=NOW)["limit"] == views.MAX_PAGE


def test_job_row_shows_progress_reason_and_key_metric() -> None:
    row = views.job_row(job("x", "Failed", "2026-01-01T23:00:00Z", progress={"step": 3, "totalSteps": 8, "percent": 37.5},
                            metrics={"loss": 0.4}, lastError={"reason": "TrainerError", "message": "boom"}), NOW)
    assert (row["phase"], row["step"], row["totalSteps"], row["reason"], row["message"]) == \
        ("Failed", 3, 8, "TrainerError", "boom")
    assert row["keyMetric"] == {"name": "loss", "value": 0.4} and row["age"] == "60m"
    evaluated = views.job_row(job("y", "Succeeded", "2026-01-01T00:00:00Z", metrics={"loss": 0.1},
                                  evaluation={"winRate": 0.9}), NOW)
    assert evaluated["keyMetric"] == {"name": "winRate", "value": 0.9}
    assert views.job_row(job("z", None, "2026-01-01T00:00:00Z"), NOW)["phase"] == "Pending"


def test_timeline_merges_conditions_and_events_in_time_order() -> None:
    obj = job("x", "Running", "2026-01-01T00:00:00Z", conditions=[
        {"type": "Running", "status": "True", "reason": "PodsRunning", "lastTransitionTime": "2026-01-01T00:00:10Z"}])
    events = [{"reason": "Created", "lastTimestamp": "2026-01-01T00:00:05Z", "involvedObject": {"kind": "Job", "name": "x-trainer"}},
              {"reason": "Scraped", "lastTimestamp": "2026-01-01T00:00:20Z", "type": "Warning", "involvedObject": {}}]
    assert [e["reason"] for e in views.timeline(obj, events)] == ["Created", "PodsRunning", "Scraped"]


def test_spec_diff_lists_only_what_differs() -> None:
    a = {"algorithm": "dpo", "hyperparameters": {"beta": 0.1, "epochs": 2}, "x": [1, 2]}
    b = {"algorithm": "dpo", "hyperparameters": {"beta": 0.2, "epochs": 2}, "x": [1, 2], "extra": True}
    assert views.spec_diff({"a": a, "b": b}) == [
        {"field": "extra", "values": {"a": None, "b": True}},
        {"field": "hyperparameters.beta", "values": {"a": 0.1, "b": 0.2}}]
    assert views.spec_diff({"a": a, "a2": dict(a)}) == []


def test_evaluation_view_gains_and_shared_histogram_bins() -> None:
    doc = {"status": {"winRate": 0.5}, "gates": [{"expression": "winRate >= 0.6", "passed": False}],
           "samples": [{"prompt": "p", "policy": "Sure!", "reference": "no", "policy_reward": 1.0, "reference_reward": 0.0},
                       {"prompt": "q", "policy": "x", "reference": "y", "policy_reward": 0.0, "reference_reward": 0.5},
                       {"prompt": "r", "policy": "z", "reference": "w", "policy_reward": None, "reference_reward": 0.2}]}
    view = views.evaluation_view({}, doc)
    assert [s["gain"] for s in view["samples"]] == [1.0, -0.5, None]
    hist = view["histogram"]
    assert sum(hist["policy"]) == 2 and sum(hist["reference"]) == 3  # the unscored sample is not counted
    assert len(hist["centers"]) == 10 and hist["centers"][0] == pytest.approx(0.05)
    assert hist["policy"][0] == hist["policy"][9] == 1  # the highest reward falls in the last bin, not past it
    assert [i for i, n in enumerate(hist["reference"]) if n] == [0, 2, 5]
    assert views.histogram([0.5], [0.5]) == {"centers": [0.5], "policy": [1.0], "reference": [1.0]}
    assert views.evaluation_view({"evaluation": {"winRate": 1.0}}, None)["summary"] == {"winRate": 1.0}


def test_checkpoints_carry_the_metrics_of_their_step() -> None:
    obj = job("x", "Succeeded", "2026-01-01T00:00:00Z",
              artifacts={"checkpoints": ["s3://b/x/checkpoints/checkpoint-10", "pvc://vol/x/checkpoints"]})
    curves = series.table([{"step": 10, "loss": 0.3}])
    rows = views.checkpoints(obj, lambda step: series.at_step(curves, step))
    assert rows == [{"uri": "s3://b/x/checkpoints/checkpoint-10", "step": 10, "metrics": {"loss": 0.3}},
                    {"uri": "pvc://vol/x/checkpoints", "step": None, "metrics": {}}]
