"""The trainer's success termination message: what the operator turns into status artifacts and evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

from align_operator.status.termination import from_terminated
from align_trainer.main import MAX_TERMINATION_MESSAGE, success_message
from align_trainer.runtime import TrainResult


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
