"""Fail fast in the trainer itself (issue 16): a bad job exits with a permanent code before any model is
loaded; a retry after a post-training failure publishes the trained checkpoint without training past the
planned step count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align_api.constants import ExitCode, Reason
from align_operator.status.termination import from_terminated
from align_trainer import storage
from align_trainer.main import run

from .trainer_support import manifest, read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


def test_pod_preflight_fails_permanently_before_loading_a_model(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import align_trainer.models as models

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("a model was loaded before the preflight failed")

    monkeypatch.setattr(models.Models, "__init__", no_model)
    log = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(log))
    grader = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
              "reference": "{{item.reference_answer}}", "operation": "eq"}  # the rows have `answer`
    config = manifest(tmp_path, "bad-job", "grpo", "rft.openai.jsonl", hp={"numGenerations": 2},
                      grader=grader, output={"uri": "file:///proc/align-test/out"})
    code = run(["--config", str(config), "--metrics-port", "-1"])
    assert code == ExitCode.PREFLIGHT_FAILED and code in ExitCode.PERMANENT  # the Job's podFailurePolicy fails it
    text = log.read_text()
    assert "spec.grader.reference" in text and "did you mean {{item.answer}}" in text
    assert "spec.output.uri" in text and f"{config}:" in text
    termination = from_terminated({"exitCode": code, "message": text})
    assert termination.reason == Reason.PREFLIGHT_FAILED and "spec.output.uri" in termination.message
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_retried_run_stops_at_its_planned_step_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = manifest(tmp_path, "retried", "sft", "sft.openai.jsonl", hp={"maxSteps": 2, "batchSize": 4},
                      checkpoints={"everySteps": 1, "keep": 1}, output={"uri": str(tmp_path / "published")})
    work = tmp_path / "work"
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(work))  # as the operator sets it: the pod's working directory
    monkeypatch.setenv("ALIGN_JOB_UID", "uid-1")
    real_upload = storage.upload

    def upload_fails(*_: object, **__: object) -> str:
        raise OSError("the store went away")

    monkeypatch.setattr(storage, "upload", upload_fails)
    assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.TRANSIENT  # the Job retries
    assert max(r["step"] for r in read_metrics(work)) == 2
    monkeypatch.setattr(storage, "upload", real_upload)
    log = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(log))
    assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    assert max(r["step"] for r in read_metrics(work)) == 2  # nothing trained past maxSteps
    done = json.loads(log.read_text())
    assert done["steps"] == 2 and done["totalSteps"] == 2
    assert (tmp_path / "published" / "adapter" / "adapter_model.safetensors").exists()
