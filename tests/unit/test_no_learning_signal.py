"""No learning signal, said early (issue 22 item 8): identical rewards within every prompt's samples in the first
grading batches warn (log, align_trainer_warning metric -> the operator's LearningSignal condition and event) or,
with runPolicy.failOnNoLearningSignal, stop the run; a grader with variance never warns."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from align_api.constants import ConditionType, ExitCode, Reason
from align_api.graders import StringCheckGrader
from align_api.runtime import RunPolicy
from align_operator.status.exposition import parse
from align_operator.status.progress import key_metrics, parse_metrics
from align_operator.status.warnings import new_warnings, parse_warnings, warning_conditions
from align_trainer.errors import NoLearningSignal
from align_trainer.graders import Grader, build
from align_trainer.graders.core import GradeResult
from align_trainer.graders.health import GraderHealth, flat_groups
from align_trainer.metrics import Metrics

ROWS = [{"messages": [{"role": "user", "content": f"Question {i}? (A) x (B) y"}], "answer": "A"} for i in range(2)]


def results(rewards: list[float]) -> list[GradeResult]:
    return [GradeResult(r) for r in rewards]


def test_flat_groups_reads_variance_within_each_prompt() -> None:
    items = [ROWS[0], ROWS[0], ROWS[1], ROWS[1]]
    assert flat_groups([0, 0, 1, 1], items)          # each prompt's samples agree: group advantages are all zero
    assert not flat_groups([0, 1, 1, 1], items)      # one prompt has a difference to learn from
    assert flat_groups([0.5, 0.5], ROWS)             # one sample per prompt: the batch as one group
    assert not flat_groups([0.5, 0.7], ROWS)
    same_row = [{"answer": "A"}] * 4  # standard prompts: the row's fields alone do not tell the prompts apart
    assert flat_groups([0, 0, 1, 1], same_row, ["p1", "p1", "p2", "p2"])
    assert not flat_groups([0, 0, 1, 1], same_row)


def _grader(health: GraderHealth) -> Grader:
    grader = build(StringCheckGrader(type="string_check", name="exact", input="{{sample.output_text}}",
                                     reference="{{item.answer}}", operation="eq"))
    grader.health = health
    return grader


def test_constant_rewards_warn_once_with_answers_and_references() -> None:
    warned: list[tuple[str, str]] = []
    grader = _grader(GraderHealth.from_spec(RunPolicy(noLearningSignalSteps=2), warn=lambda r, m: warned.append((r, m))))
    items, answers = [ROWS[0], ROWS[0], ROWS[1], ROWS[1]], ["A: bowling", "B: tennis", "A: a ball", "A: x"]
    grader.grade_batch(items, answers)
    assert not warned  # one flat batch is not yet "the first steps"
    grader.grade_batch(items, answers)
    assert len(warned) == 1 and warned[0][0] == Reason.NO_LEARNING_SIGNAL
    message = warned[0][1]
    assert "grader 'exact' gave every prompt's samples the same reward in each of the first 2 grading batches" in message
    assert "'A: bowling' vs 'A' -> 0" in message and "'B: tennis' vs 'A' -> 0" in message
    grader.grade_batch(items, answers)
    assert len(warned) == 1  # said once


def test_a_grader_with_variance_never_warns() -> None:
    warned: list[Any] = []
    grader = _grader(GraderHealth.from_spec(RunPolicy(noLearningSignalSteps=2), warn=lambda r, m: warned.append(r)))
    grader.grade_batch([ROWS[0], ROWS[0]], ["A", "B"])  # 1 and 0 for one prompt: signal
    for _ in range(3):
        grader.grade_batch([ROWS[0], ROWS[0]], ["x", "y"])  # flat later: the early check is over
    assert not warned
    off = _grader(GraderHealth.from_spec(RunPolicy(noLearningSignalSteps=0), warn=lambda r, m: warned.append(r)))
    for _ in range(3):
        off.grade_batch([ROWS[0], ROWS[0]], ["x", "y"])
    assert not warned  # 0 never checks


def test_fail_on_no_learning_signal_stops_permanently() -> None:
    health = GraderHealth.from_spec(RunPolicy(noLearningSignalSteps=1, failOnNoLearningSignal=True))
    with pytest.raises(NoLearningSignal, match="failOnNoLearningSignal") as err:
        health.observe("exact", results([0.0, 0.0]), [ROWS[0], ROWS[0]], ["a", "b"])
    assert err.value.exit_code == ExitCode.NO_LEARNING_SIGNAL and ExitCode.NO_LEARNING_SIGNAL in ExitCode.PERMANENT
    assert ExitCode.REASONS[ExitCode.NO_LEARNING_SIGNAL] == Reason.NO_LEARNING_SIGNAL


def test_the_trainer_metric_becomes_the_operator_condition_and_one_event() -> None:
    metrics = Metrics("job", None)
    metrics.warn(Reason.NO_LEARNING_SIGNAL, 'no learning signal: "A: bowling" vs \'A\' -> 0')
    text = generate_latest(metrics.registry).decode()
    assert 'align_trainer_warning{job="job",message=' in text and 'reason="NoLearningSignal"} 1.0' in text
    warnings = parse_warnings(parse(text))
    assert warnings == {"NoLearningSignal": 'no learning signal: "A: bowling" vs \'A\' -> 0'}
    assert "warning" not in key_metrics(parse_metrics(parse(text)))  # a condition, not a number in status.metrics
    conditions = warning_conditions([], warnings, 1, "2026-01-01T00:00:00Z")
    cond = next(c for c in conditions if c["type"] == ConditionType.LEARNING_SIGNAL)
    assert cond["status"] == "False" and cond["reason"] == "NoLearningSignal" and "A: bowling" in cond["message"]
    assert new_warnings([], conditions) == [cond]
    assert new_warnings(conditions, warning_conditions(conditions, warnings, 1, "2026-01-01T00:00:05Z")) == []
    assert warning_conditions([], {"SomethingElse": "x"}, 1, "t") == []
