"""The trainer's success termination message: what the operator turns into status artifacts and evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from align_operator.status.termination import from_terminated
from align_trainer.main import MAX_TERMINATION_MESSAGE, success_message
from align_trainer.runtime import TrainResult
from align_trainer.termination import CUT_MARK, WARNING_MIN, WARNING_SHORT, fit


def test_success_message_round_trips_through_the_operator(tmp_path: Path) -> None:
    result = TrainResult(steps=16, total_steps=16, metrics={"loss": 0.36, "grad_norm": math.nan},
                         eval_metrics={"eval_loss": 0.37}, adapter_dir=tmp_path / "final",
                         adapter_uri="s3://bucket/jobs/dpo/final",
                         extra={"evaluation": {"winRate": 1.0, "rewardDelta": 0.65, "lengthRewardCorrelation": None},
                                "evaluation_report": "s3://bucket/jobs/dpo/final/evaluation/report.md"})
    text = success_message(result, tmp_path / "metrics.jsonl")
    json.loads(text)  # strict JSON: NaN became null
    parsed = from_terminated({"exitCode": 0, "message": text})
    assert parsed.artifacts["adapter"] == "s3://bucket/jobs/dpo/final"
    assert parsed.artifacts["report"].endswith("report.md")
    assert parsed.artifacts["metrics"] == str(tmp_path / "metrics.jsonl")
    assert parsed.steps == 16 and parsed.total_steps == 16
    assert parsed.final_metrics == {"loss": 0.36, "grad_norm": None, "eval_loss": 0.37}
    assert parsed.evaluation == {"winRate": 1.0, "rewardDelta": 0.65, "lengthRewardCorrelation": None}


def test_success_message_fits_the_kubelet_limit_and_keeps_the_artifacts(tmp_path: Path) -> None:
    many = {f"metric_with_a_long_name_{i}": float(i) for i in range(400)}
    result = TrainResult(steps=1, total_steps=1, metrics=many, adapter_dir=tmp_path / "final",
                         extra={"evaluation": {f"e{i}": 0.5 for i in range(400)}})
    text = success_message(result)
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    doc = json.loads(text)
    assert doc["artifacts"]["adapter"] == str(tmp_path / "final") and "finalMetrics" not in doc


def test_the_kept_checkpoints_go_first_when_the_message_is_too_long(tmp_path: Path) -> None:
    kept = [{"step": 10 * i, "time": "2026-01-01T00:00:00Z", "metrics": {"loss": 1.0 / i}} for i in range(1, 13)]
    small = json.loads(success_message(TrainResult(steps=120, total_steps=120, adapter_dir=tmp_path / "final",
                                                   checkpoint_index=kept)))
    assert [c["step"] for c in small["checkpointIndex"]] == [10 * i for i in range(3, 13)]   # the newest 10
    many = {f"metric_with_a_long_name_{i}": float(i) for i in range(60)}
    big = json.loads(success_message(TrainResult(steps=1, total_steps=1, metrics=many, adapter_dir=tmp_path / "final",
                                                 checkpoint_index=[{**c, "metrics": many} for c in kept])))
    assert "checkpointIndex" not in big and "finalMetrics" in big


# --- warnings: a run that ends before the operator's next scrape reports them in this message alone --------------
#: as graders/health.py writes it: what went wrong first, then sampled answers (here non-ASCII and control bytes, as
#: builtin://tiny writes them: repr escapes the latter, JSON the rest), then advice
FLAT = ("no learning signal: grader 'exact' gave every prompt's samples the same reward in each of the first 2 "
        "grading batches (rewards 0); advantages are zero and training learns nothing. Sampled answers vs what the "
        "grader compared them with: " + "; ".join([repr("é\x01" * 40) + " vs 'A' -> 0"] * 3)
        + ". Check the grader on these answers with `alignctl grade`")


def test_the_warnings_ride_in_the_message_and_reach_the_operator(tmp_path: Path) -> None:
    warnings = [{"reason": "NoLearningSignal", "message": FLAT}, {"reason": "NoLearningSignal", "message": "again"}]
    text = success_message(TrainResult(steps=2, total_steps=2, adapter_dir=tmp_path / "final"), warnings=warnings)
    parsed = from_terminated({"exitCode": 0, "message": text})
    assert parsed.warnings == {"NoLearningSignal": FLAT[:1024]}  # the first of each reason, as the gauge has it
    assert "warnings" not in json.loads(success_message(TrainResult(steps=2, total_steps=2)))


@pytest.mark.parametrize("metrics,evaluation,uri,chars,kept", [
    (80, 0, 300, WARNING_SHORT, {"finalMetrics", "evaluation"}),  # checkpoints gone, the warning cut once: fits
    (400, 400, 300, WARNING_SHORT, set()),                         # then the numbers go, the warning stays as it was
    (400, 400, 3600, WARNING_MIN, set()),                          # huge artifacts: the warning is cut again
])
def test_a_long_message_is_cut_to_valid_json_keeping_the_artifacts_and_the_warning(
        tmp_path: Path, metrics: int, evaluation: int, uri: int, chars: int, kept: set[str]) -> None:
    saved = [{"step": i, "time": "2026-01-01T00:00:00Z", "metrics": {"loss": 0.5}} for i in range(1, 11)]
    adapter = "s3://b/" + "a" * uri
    result = TrainResult(steps=1, total_steps=1, adapter_dir=tmp_path / "final", adapter_uri=adapter,
                         metrics={f"metric_with_a_long_name_{i}": float(i) for i in range(metrics)},
                         extra={"evaluation": {f"e{i}": 0.5 for i in range(evaluation)}}, checkpoint_index=saved)
    text = success_message(result, warnings=[{"reason": "NoLearningSignal", "message": FLAT * 4}])
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    doc = json.loads(text)  # the kubelet keeps these bytes: still JSON
    assert doc["artifacts"]["adapter"] == adapter and "checkpointIndex" not in doc
    assert {"finalMetrics", "evaluation"} & set(doc) == kept
    [warning] = doc["warnings"]
    assert warning["reason"] == "NoLearningSignal" and len(warning["message"]) == chars
    assert warning["message"].startswith("no learning signal: grader 'exact'") and warning["message"].endswith(CUT_MARK)
    if chars == WARNING_SHORT:
        assert "'é\\x01" in warning["message"]  # a sampled answer still shows


def test_cuts_go_in_order_and_stop_as_soon_as_the_message_fits() -> None:
    doc = {"artifacts": {"adapter": "a"}, "checkpointIndex": ["x" * 100], "finalMetrics": {"m": 1.0},
           "evaluation": {"e": 1.0}, "warnings": [{"reason": "R", "message": "w" * 1024}]}
    copy = lambda: json.loads(json.dumps(doc))  # noqa: E731  (fit cuts in place)
    whole = len(fit(copy(), 10**6).encode())
    assert json.loads(fit(copy(), whole)) == doc  # fits: nothing cut
    cut = json.loads(fit(copy(), whole - 1))
    assert "checkpointIndex" not in cut and cut["warnings"][0]["message"] == "w" * 1024 and "finalMetrics" in cut
    cut = json.loads(fit(copy(), whole - 200))
    assert len(cut["warnings"][0]["message"]) == WARNING_SHORT and "finalMetrics" in cut and "evaluation" in cut
