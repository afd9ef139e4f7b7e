"""Trainer metrics (Prometheus, metrics.jsonl, divergence) and checkpoint validation/rotation/atomicity."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import pytest

from align_trainer import checkpoints
from align_trainer.callbacks import progress_line
from align_trainer.errors import Diverged
from align_trainer.main import write_termination_message
from align_trainer.metrics import Metrics, gauge_name, tokens_per_second


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_gauges_endpoint_and_jsonl(tmp_path: Path) -> None:
    metrics = Metrics("job-a", tmp_path / "metrics.jsonl", port=0, status_file=tmp_path / "status.json")
    try:
        metrics.progress(step=3, total_steps=10, epoch=0.3)
        metrics.log({"loss": 0.5, "rewards/margins": 0.25, "kl": 0.01, "eval_loss": 0.7, "train_runtime": 1.0},
                    step=3, epoch=0.3)
        metrics.write_status(state="Running")
        text = scrape(metrics.port)  # type: ignore[arg-type]
    finally:
        metrics.close()
    assert 'align_trainer_loss{job="job-a",split="train"} 0.5' in text
    assert 'align_trainer_loss{job="job-a",split="eval"} 0.7' in text
    assert 'align_trainer_rewards_margins{job="job-a",split="train"} 0.25' in text
    assert 'align_trainer_metric{job="job-a",name="kl",split="train"} 0.01' in text
    assert 'align_trainer_step{job="job-a"} 3.0' in text and 'align_trainer_total_steps{job="job-a"} 10.0' in text
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record["step"] == 3 and record["rewards/margins"] == 0.25 and "train_runtime" not in record
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["step"] == 3 and status["state"] == "Running" and status["metrics"]["loss"] == 0.5


@pytest.mark.parametrize("key", ["loss", "grad_norm", "eval_loss"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_or_grad_norm_diverges_and_is_exported_raw(tmp_path: Path, key: str, bad: float) -> None:
    metrics = Metrics("job-b", tmp_path / "m.jsonl", port=0)
    try:
        with pytest.raises(Diverged, match=f"diverged at step 7: {key}="):
            metrics.log({key: bad, "learning_rate": 1e-3}, step=7)
        text = scrape(metrics.port)  # type: ignore[arg-type]
    finally:
        metrics.close()
    name = key.removeprefix("eval_")
    split = "eval" if key.startswith("eval_") else "train"
    assert f'align_trainer_{name}{{job="job-b",split="{split}"}} {"NaN" if math.isnan(bad) else "+Inf"}' in text
    assert (tmp_path / "m.jsonl").read_text().count("\n") == 1  # the bad value is recorded before stopping


def test_nan_elsewhere_is_only_exported() -> None:
    metrics = Metrics("job-c", None)
    metrics.log({"rewards/margins": math.nan}, step=1)  # not a divergence signal on its own
    assert math.isnan(metrics.latest["rewards/margins"])


def test_helpers() -> None:
    assert gauge_name("rewards/margins") == "rewards_margins"
    assert tokens_per_second(None, 10, 1.0) is None
    assert tokens_per_second((1.0, 100.0), 300.0, 3.0) == 100.0
    assert progress_line(5, 20, {"loss": 0.12345}, None, 0) == "step 5/20 (25%) loss=0.1235"


def test_termination_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(target))
    write_termination_message("DataError", "x" * 5000)
    text = target.read_text()
    assert text.startswith("DataError: xxx") and len(text) == 4096
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(tmp_path / "missing-dir" / "log"))
    write_termination_message("DataError", "not writable: ignored")  # no exception outside a pod


def fake_checkpoint(root: Path, step: int, *, optimizer: bool = True, weights: bytes | None = None) -> Path:
    from safetensors.torch import save_file
    import torch
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if weights is None:
        save_file({"w": torch.zeros(2)}, str(path / "adapter_model.safetensors"))
    else:
        (path / "adapter_model.safetensors").write_bytes(weights)
    if optimizer:
        (path / "optimizer.pt").write_bytes(b"opt")
    return path


def test_resume_picks_newest_valid_checkpoint(tmp_path: Path) -> None:
    fake_checkpoint(tmp_path, 4)
    good = fake_checkpoint(tmp_path, 8)
    fake_checkpoint(tmp_path, 12, weights=b"truncated")            # killed mid-write of the weights
    fake_checkpoint(tmp_path, 16, optimizer=False)                 # optimizer state missing
    bad_state = fake_checkpoint(tmp_path, 20)
    (bad_state / "trainer_state.json").write_text("{")            # unreadable state
    (tmp_path / ".staging-abc").mkdir()                            # leftover of a killed save
    assert checkpoints.find_resume(tmp_path) == good
    assert not (tmp_path / ".staging-abc").exists()
    assert "corrupt" in (checkpoints.validate(tmp_path / "checkpoint-12") or "")
    assert checkpoints.validate(tmp_path / "checkpoint-16") == "no optimizer.pt"


def test_step_mismatch_is_invalid(tmp_path: Path) -> None:
    path = fake_checkpoint(tmp_path, 4)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    assert "says step 3" in (checkpoints.validate(path) or "")


def test_rotate_keeps_newest(tmp_path: Path) -> None:
    for step in (2, 4, 6, 10):
        fake_checkpoint(tmp_path, step)
    checkpoints.rotate(tmp_path, keep=2)
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["checkpoint-6", "checkpoint-10"]


def test_commit_dir_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "final"
    target.mkdir()
    (target / "old").write_text("1")
    staging = checkpoints.staging_dir(tmp_path)
    staging.mkdir()
    (staging / "new").write_text("2")
    checkpoints.commit_dir(staging, target)
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


def test_output_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import align_api
    from align_trainer.main import output_dir
    doc = """
apiVersion: align.dev/v1alpha1
kind: AlignmentJob
metadata: {name: j}
spec:
  algorithm: sft
  model: {base: builtin://tiny}
  data: {train: {uri: ./x.jsonl}}
  resources: {gpusPerNode: 0}
  checkpoints: {volume: ckpts}
"""
    job = align_api.load_text(doc)[0]
    monkeypatch.delenv("ALIGN_OUTPUT_DIR", raising=False)
    monkeypatch.setenv("ALIGN_PVC_ROOT", str(tmp_path))
    assert output_dir(job, None) == tmp_path / "ckpts" / "j"  # restarts find their checkpoints on the claim
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(tmp_path / "env"))
    assert output_dir(job, None) == tmp_path / "env"
    assert output_dir(job, tmp_path / "cli") == tmp_path / "cli"


def test_running_status_is_throttled_but_final_states_are_written_at_once(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """status.json is rewritten at most every STATUS_INTERVAL seconds while running (it was the trainer's
    largest per-log cost); a terminal state always lands."""
    from align_trainer import metrics as metrics_module
    clock = [100.0]
    monkeypatch.setattr(metrics_module.time, "monotonic", lambda: clock[0])
    metrics = Metrics("job-a", None, status_file=tmp_path / "status.json")
    read = lambda: json.loads((tmp_path / "status.json").read_text())  # noqa: E731
    metrics.progress(step=1, total_steps=10)
    metrics.write_status(state="Running")
    metrics.progress(step=2, total_steps=10)
    metrics.write_status(state="Running")
    assert read()["step"] == 1  # within the interval: not rewritten
    clock[0] += metrics_module.STATUS_INTERVAL
    metrics.write_status(state="Running")
    assert read()["step"] == 2
    metrics.progress(step=3, total_steps=10)
    metrics.write_status(state="Succeeded")
    assert read()["step"] == 3 and read()["state"] == "Succeeded"
