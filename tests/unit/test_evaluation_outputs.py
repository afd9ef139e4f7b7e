"""Gates, report.md, evaluation.json and the PNG charts, from synthetic samples (no model)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from align_trainer.evaluation.gates import check_gate, check_gates, failure_message
from align_trainer.evaluation.outputs import read_evaluation, write_policy_evaluation, write_reward_model_evaluation
from align_trainer.evaluation.policy_stats import Sample, evaluate_policy
from align_trainer.evaluation.reward_stats import Pair, evaluate_reward_model


def test_gate_passes_and_fails() -> None:
    metrics = {"winRate": 0.6, "rewardDelta": -0.1, "rewardDeltaLow": -0.3}
    assert check_gate("winRate >= 0.55", metrics).passed
    failed = check_gate("rewardDelta > 0", metrics)
    assert not failed.passed and "FAILED" in failed.message and "rewardDelta=-0.1" in failed.message
    assert check_gate("0.5 < winRate <= 1", metrics).passed
    assert not check_gate("min(winRate, rewardDeltaLow + 1) > 0.7", metrics).passed


def test_gate_on_unmeasured_metric_fails() -> None:
    result = check_gate("accuracy >= 0.7", {"winRate": 0.9, "accuracy": None})
    assert not result.passed and "not measured" in result.message
    assert not check_gate("lengthRatio < 1.5", {"winRate": 0.9}).passed
    assert not check_gate("winRate > 0.5", {"winRate": math.nan}).passed


def test_failure_message_lists_failed_gates_only() -> None:
    results = check_gates(["winRate >= 0.55", "rewardDelta > 0"], {"winRate": 0.6, "rewardDelta": -1.0})
    message = failure_message(results)
    assert message.startswith("evaluation gate failed:") and "rewardDelta > 0" in message and "winRate" not in message
    assert failure_message(check_gates(["winRate > 0"], {"winRate": 1.0})) == ""


def _samples(n: int = 40) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        pl, rl = int(rng.integers(5, 40)), int(rng.integers(5, 40))
        pr, rr = float(rng.normal(0.6, 0.2)), float(rng.normal(0.4, 0.2))
        out.append(Sample(prompt=f"Question {i} | with a pipe", policy="A" * pl + " ```code```", reference="B" * rl,
                          policy_reward=pr, reference_reward=rr, policy_length=pl, reference_length=rl))
    return out


def _assert_real_png(path: Path) -> None:
    import matplotlib.image as mpimg
    assert path.exists() and path.stat().st_size > 5_000, path
    pixels = mpimg.imread(path)
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05, f"{path} is a single colour"


def test_policy_outputs(tmp_path: Path) -> None:
    samples = _samples()
    ev = evaluate_policy(samples)
    outcome = write_policy_evaluation(tmp_path, "demo", samples, ev, ["winRate >= 0.55", "lengthRatio < 0.5"],
                                      {"algorithm": "dpo"})
    assert not outcome.passed and [g.passed for g in outcome.gates] == [True, False]
    assert {p.name for p in outcome.charts} == {"reward_distributions.png", "reward_vs_length.png", "win_tie_loss.png"}
    for chart in outcome.charts:
        _assert_real_png(chart)
    doc = read_evaluation(tmp_path)
    assert doc["kind"] == "policy" and doc["passed"] is False and len(doc["samples"]) == 40
    assert doc["status"]["winRate"] == ev.metrics["winRate"]
    assert doc["charts"] == ["reward_distributions.png", "reward_vs_length.png", "win_tie_loss.png"]
    json.dumps(doc, allow_nan=False)  # status-ready: no NaN anywhere
    report = outcome.report.read_text()
    assert "# Evaluation of `demo`" in report and "| Win rate (ties count half) |" in report
    assert "## Largest gains" in report and "## Largest losses" in report
    assert "Question" in report and "FAIL" in report and "not published as final" in report
    assert "![reward distributions](reward_distributions.png)" in report
    assert "````text" in report  # an answer containing ``` gets a longer fence


def test_policy_outputs_with_constant_rewards(tmp_path: Path) -> None:
    # A 0/1 grader that never passes anything: charts must still render (no zero-width bins).
    samples = [Sample("q", "a", "b", 0.0, 0.0, 3, 3) for _ in range(5)]
    outcome = write_policy_evaluation(tmp_path, "flat", samples, evaluate_policy(samples), [], {})
    assert outcome.passed and outcome.metrics["winRate"] == 0.5
    assert outcome.metrics["lengthRewardCorrelation"] is None
    assert all(p.stat().st_size > 5_000 for p in outcome.charts)


def test_report_shows_answers_side_by_side_when_all_tie(tmp_path: Path) -> None:
    # Issue 22: with tie rate 1 there are no gains or losses, yet the reader must see both models' answers.
    samples = [Sample(f"What is {i} + {i}?", f"policy says {2 * i}", f"policy says {2 * i}" if i < 3 else "no idea",
                      1.0, 1.0, 4, 4) for i in range(7)]
    ev = evaluate_policy(samples)
    assert ev.metrics["tieRate"] == 1 and not ev.top_gains and not ev.top_losses
    report = write_policy_evaluation(tmp_path, "ties", samples, ev, [], {}, charts=False).report.read_text()
    section = report.split("## Sample answers, policy and reference")[1].split("## Largest gains")[0]
    assert "identical answers on 3 of 7 prompts" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "What is" in line]
    assert len(rows) == 5  # the first top_k prompts, in order
    assert rows[0].split(" | ")[1:4] == ["What is 0 + 0?", "policy says 0", "policy says 0"] and rows[0].endswith("| yes |")
    assert "| no idea |" in rows[4] and rows[4].endswith("| no |")
    same = [Sample("q", "same", "same", 0.0, 0.0, 1, 1)] * 3
    text = write_policy_evaluation(tmp_path / "same", "same", same, evaluate_policy(same), [], {}, charts=False)
    assert "identical answers on 3 of 3 prompts (the adapter changed nothing" in text.report.read_text()


def test_reward_model_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pairs = []
    for _ in range(60):
        cl, rl = int(rng.integers(20, 50)), int(rng.integers(5, 19))
        pairs.append(Pair("q", "c" * cl, "r" * rl, 0.05 * cl + rng.normal(0, 0.1), 0.05 * rl + rng.normal(0, 0.1), cl, rl))
    ev = evaluate_reward_model(pairs)
    outcome = write_reward_model_evaluation(tmp_path, "rm", pairs, ev, ["accuracy >= 0.9"], {})
    assert outcome.passed and outcome.kind == "reward_model"
    for chart in outcome.charts:
        _assert_real_png(chart)
    report = outcome.report.read_text()
    assert "**Length bias:**" in report and "## Accuracy by length" in report and "## Calibration" in report
    assert read_evaluation(tmp_path / "evaluation.json")["details"]["lengthBiasFlag"] is True


@pytest.mark.parametrize("gate", ["winRate >= 0.55", "rewardDeltaLow > 0"])
def test_gates_accept_spec_expressions(gate: str) -> None:
    from align_api.evaluation import Evaluation
    spec = Evaluation(gates=[gate])
    assert check_gates(spec.gates, {"winRate": 0.9, "rewardDeltaLow": 0.1})[0].passed


def test_json_written_strict_even_when_every_grade_failed(tmp_path: Path) -> None:
    """Regression: undefined numbers (all grades failed: NaN means, NaN intervals) became a crash and a stray
    temp file; now they are null in strict JSON and nothing else is left in the directory."""
    from align_trainer.storage import write_json_atomic

    write_json_atomic(tmp_path / "evaluation.json", {"status": {"winRate": math.nan},
                                                     "details": {"summary": {"mean": math.inf, "n": 0}}})
    text = (tmp_path / "evaluation.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")) == {
        "status": {"winRate": None}, "details": {"summary": {"mean": None, "n": 0}}}
    assert [p.name for p in tmp_path.iterdir()] == ["evaluation.json"]
