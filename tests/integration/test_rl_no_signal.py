"""GRPO on builtin://tiny (issue 22 item 8): a grader that gives every sample one reward warns early, with the
sampled answers beside the reference they were compared with (log line, status.json, the metric behind the
operator's event and condition), or fails with failOnNoLearningSignal; a grader with variance does not warn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from align_api.constants import ExitCode
from align_operator.status.termination import from_terminated
from align_trainer.main import run

from .trainer_support import manifest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]

HP = {"batchSize": 8, "numGenerations": 4, "maxCompletionLength": 6, "maxSteps": 2, "temperature": 1.0}
#: the tiny model writes random bytes: never the reference, so every reward is 0
CONSTANT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}", "operation": "eq"}
#: graded against the same reference, but by similarity: random answers get different scores
VARYING = {"type": "text_similarity", "name": "similar", "input": "{{sample.output_text}}",
           "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}


def grpo(tmp_path: Path, grader: dict[str, Any], **run_policy: Any) -> tuple[int, dict[str, Any]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = manifest(tmp_path, "nosignal", "grpo", "rft.openai.jsonl", hp=HP, grader=grader,
                      runPolicy={"noLearningSignalSteps": 2, **run_policy})
    out = tmp_path / "out"
    code = run(["--config", str(config), "--output", str(out), "--metrics-port", "-1"])
    return code, json.loads((out / "status.json").read_text())


def test_constant_reward_warns_and_a_varying_one_does_not(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(termination))
    code, status = grpo(tmp_path / "constant", CONSTANT)
    assert code == ExitCode.OK  # a warning: the run goes on
    [warning] = status["warnings"]
    assert warning["reason"] == "NoLearningSignal"
    message = warning["message"]
    assert "grader 'exact' gave every prompt's samples the same reward in each of the first 2 grading batches" in message
    assert " vs 'a " in message and "-> 0" in message  # answers beside the rendered {{item.answer}} (e.g. 'a apple is aaa')
    # the success termination message carries it too (a 2-step run may end before the operator's next scrape),
    # word for word as the warning gauge's label has it
    ended = from_terminated({"exitCode": 0, "message": termination.read_text()})
    assert ended.warnings == {"NoLearningSignal": message[:1024]} and ended.artifacts["adapter"]
    assert any("no learning signal" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    caplog.clear()
    code, status = grpo(tmp_path / "varying", VARYING)
    assert code == ExitCode.OK and not status.get("warnings")
    assert from_terminated({"exitCode": 0, "message": termination.read_text()}).warnings == {}
    assert not any("no learning signal" in r.getMessage() for r in caplog.records)


def test_fail_on_no_learning_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    termination = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(termination))
    code, status = grpo(tmp_path, CONSTANT, failOnNoLearningSignal=True)
    assert code == ExitCode.NO_LEARNING_SIGNAL
    # what the operator's lastError and Failed condition will say: why, with the sampled answers
    failure = from_terminated({"exitCode": code, "message": termination.read_text()})
    assert failure.reason == "NoLearningSignal"
    assert failure.message.startswith("no learning signal: grader 'exact' gave every prompt's samples the same reward")
    assert " vs 'a " in failure.message and failure.message.endswith("(spec.runPolicy.failOnNoLearningSignal)")
