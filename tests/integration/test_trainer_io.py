"""Trainer I/O end to end: models and data from S3 (a moto server) and from a PVC mount, artifacts uploaded
there; failures become exit codes and termination messages, and never leave a final artifact behind."""

from __future__ import annotations

import math
import shutil
import socket
from pathlib import Path
from typing import Any, Iterator

import pytest

from align_api.constants import ExitCode
from align_trainer import builtin
from align_trainer.main import run
from align_trainer.metrics import Metrics

from .trainer_support import DATA, manifest

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A moto S3 server; credentials and endpoint only through the environment, as the operator sets them."""
    import boto3
    from moto.server import ThreadedMotoServer
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    try:
        yield client
    finally:
        server.stop()


def run_job(config: Path, output: Path) -> int:
    return run(["--config", str(config), "--output", str(output), "--metrics-port", "-1"])


def test_s3_model_data_and_upload(tmp_path: Path, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for bucket in ("models", "data", "results"):
        s3.create_bucket(Bucket=bucket)
    for path in builtin.materialize("tiny").iterdir():
        s3.upload_file(str(path), "models", f"tiny/{path.name}")
    s3.upload_file(str(DATA / "preference.openai.jsonl"), "data", "pref/train.jsonl")
    config = manifest(tmp_path, "s3-job", "dpo", "preference.openai.jsonl", hp={"maxSteps": 2},
                      model={"base": "s3://models/tiny"}, output={"uri": "s3://results/runs/s3-job"})
    text = config.read_text().replace(str(DATA / "preference.openai.jsonl"), "s3://data/pref/train.jsonl")
    config.write_text(text)
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(tmp_path / "work"))
    assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="results")["Contents"]}
    assert {"runs/s3-job/adapter/adapter_model.safetensors", "runs/s3-job/adapter/README.md",
            "runs/s3-job/adapter/adapter_config.json", "runs/s3-job/metrics.jsonl"} <= keys
    card = s3.get_object(Bucket="results", Key="runs/s3-job/adapter/README.md")["Body"].read().decode()
    assert "s3://models/tiny" in card


def test_s3_missing_prefix_is_upstream_error(tmp_path: Path, s3: Any) -> None:
    s3.create_bucket(Bucket="models")
    config = manifest(tmp_path, "s3-missing", "sft", "sft.openai.jsonl", model={"base": "s3://models/nothing"})
    assert run_job(config, tmp_path / "out") == ExitCode.UPSTREAM_ERROR


def test_pvc_model_and_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "pvc"
    shutil.copytree(builtin.materialize("tiny"), root / "models" / "tiny")
    monkeypatch.setenv("ALIGN_PVC_ROOT", str(root))
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(tmp_path / "work"))
    config = manifest(tmp_path, "pvc-job", "sft", "sft.openai.jsonl", hp={"maxSteps": 2},
                      model={"base": "pvc://models/tiny"}, output={"uri": "pvc://results/sft"})
    assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    assert (root / "results" / "sft" / "adapter" / "adapter_model.safetensors").is_file()


def test_bad_row_fails_before_training_with_file_line_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    term = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(term))
    bad = tmp_path / "bad.jsonl"
    lines = (DATA / "preference.openai.jsonl").read_text().splitlines()
    lines[4] = lines[4].replace('"role": "assistant"', '"role": "bot"', 1)
    bad.write_text("\n".join(lines) + "\n")
    config = manifest(tmp_path, "bad-data", "dpo", "preference.openai.jsonl")
    config.write_text(config.read_text().replace(str(DATA / "preference.openai.jsonl"), str(bad)))
    assert run_job(config, tmp_path / "out") == ExitCode.DATA_ERROR
    assert term.read_text().startswith(f"DataError: {bad}:5: field preferred_output[0].role: must be one of")
    assert not (tmp_path / "out" / "checkpoints").exists() and not (tmp_path / "out" / "final").exists()


@pytest.mark.parametrize("edit, reason", [
    (lambda t: t.replace("algorithm: sft", "algorithm: sfx"), "ConfigError: invalid manifest"),
    (lambda t: t.replace("gpusPerNode: 0", "gpusPerNode: 1").replace("base: builtin://tiny",
                                                                    "base: builtin://tiny\n    quantization: {bits: 4}"),
     "ConfigError: spec.model.quantization needs CUDA"),
])
def test_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Any, reason: str) -> None:
    term = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(term))
    config = manifest(tmp_path, "bad-config", "sft", "sft.openai.jsonl")
    config.write_text(edit(config.read_text()))
    assert run_job(config, tmp_path / "out") == ExitCode.CONFIG_ERROR
    assert term.read_text().startswith(reason), term.read_text()


def test_divergence_stops_with_exit_code_and_no_final_artifact(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    term = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(term))
    original = Metrics.log

    def poisoned(self: Metrics, values: Any, *, step: int, epoch: Any = None) -> None:
        if step == 3 and "loss" in values:  # as if the optimizer had blown up at step 3
            values = {**values, "loss": math.nan}
        original(self, values, step=step, epoch=epoch)

    monkeypatch.setattr(Metrics, "log", poisoned)
    config = manifest(tmp_path, "diverge", "dpo", "preference.openai.jsonl", hp={"maxSteps": 6},
                      checkpoints={"everySteps": 2, "keep": 1})
    assert run_job(config, tmp_path / "out") == ExitCode.DIVERGED
    assert term.read_text().startswith("Diverged: training diverged at step 3: loss=nan")
    assert not (tmp_path / "out" / "final").exists()
    status = (tmp_path / "out" / "status.json").read_text()
    assert '"state": "Failed"' in status and '"reason": "Diverged"' in status


def test_metrics_endpoint_during_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gauges carry the job label and the progress the operator scrapes, right up to the last step."""
    import urllib.request
    seen: dict[str, str] = {}
    original_close = Metrics.close

    def scrape_then_close(self: Metrics) -> None:
        if self.port:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                seen["text"] = response.read().decode()
        original_close(self)

    monkeypatch.setattr(Metrics, "close", scrape_then_close)
    config = manifest(tmp_path, "metrics-job", "dpo", "preference.openai.jsonl", hp={"maxSteps": 3})
    assert run(["--config", str(config), "--output", str(tmp_path / "out"), "--metrics-port", "0"]) == ExitCode.OK
    text = seen["text"]
    for line in ('align_trainer_step{job="metrics-job"} 3.0', 'align_trainer_total_steps{job="metrics-job"} 3.0',
                 'align_trainer_rewards_accuracies{job="metrics-job",split="train"}',
                 'align_trainer_logps_chosen{job="metrics-job",split="train"}',
                 'align_trainer_learning_rate{job="metrics-job",split="train"}',
                 'align_trainer_tokens_per_second{job="metrics-job",split="train"}',
                 'align_trainer_grad_norm{job="metrics-job",split="train"}'):
        assert line in text, line
