"""Checkpointing under real signals: SIGTERM checkpoints and exits for a restart, SIGKILL mid-run loses at
most the steps since the last checkpoint, and a rerun with the same output resumes and ends at the same
total step count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from align_api.constants import ExitCode
from align_trainer import checkpoints

from .trainer_support import manifest, read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TOTAL = 40


def start(config: Path, output: Path, termination_log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGN_TERMINATION_LOG": str(termination_log),
           "ALIGN_LOG_LEVEL": "INFO"}
    return subprocess.Popen([sys.executable, "-m", "align_trainer", "--config", str(config), "--output", str(output),
                             "--metrics-port", "-1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def wait_for_checkpoint_after(proc: subprocess.Popen, directory: Path, step: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [checkpoints.step_of(p) or 0 for p in checkpoints.list_checkpoints(directory)]
        if steps and max(steps) > step:
            return max(steps)
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early ({proc.returncode}):\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def test_sigterm_then_sigkill_then_resume_to_the_same_total(tmp_path: Path) -> None:
    config = manifest(tmp_path, "resume-test", "dpo", "preference.openai.jsonl",
                      hp={"maxSteps": TOTAL, "batchSize": 4}, checkpoints={"everySteps": 4, "keep": 2})
    output, term = tmp_path / "out", tmp_path / "termination-log"
    ckpt_dir = output / "checkpoints"

    # 1. SIGTERM (pod deleted/preempted): checkpoint after the current step, exit TRANSIENT for a restart
    proc = start(config, output, term)
    wait_for_checkpoint_after(proc, ckpt_dir, 0)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == ExitCode.TRANSIENT, log
    message = term.read_text()
    assert message.startswith("TrainerError: terminated by SIGTERM at step "), message
    stopped_at = int(message.split("at step ")[1].split(";")[0])
    assert stopped_at < TOTAL
    assert checkpoints.find_resume(ckpt_dir) == ckpt_dir / f"checkpoint-{stopped_at}"  # saved on SIGTERM
    assert not (output / "final").exists()

    # 2. SIGKILL (OOM killer, node loss): no chance to save; only complete checkpoints are visible
    proc = start(config, output, term)
    newest = wait_for_checkpoint_after(proc, ckpt_dir, stopped_at)
    proc.kill()
    log = proc.communicate(timeout=60)[0]
    assert f"resuming from checkpoint-{stopped_at}" in log
    assert not (output / "final").exists()
    resume = checkpoints.find_resume(ckpt_dir)
    assert resume is not None and (checkpoints.step_of(resume) or 0) >= newest
    # rotation runs after the new checkpoint is in place (never before: keep=1 would leave a gap), so a kill
    # right after the rename may leave keep + 1 until the next save
    assert len(checkpoints.list_checkpoints(ckpt_dir)) <= 3
    killed_at = checkpoints.step_of(resume)
    assert killed_at is not None and killed_at < TOTAL

    # 3. Rerun with the same output: resume from the newest valid checkpoint and finish
    proc = start(config, output, term)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == ExitCode.OK, log
    assert f"resuming from checkpoint-{killed_at}" in log
    assert f"finished: {TOTAL}/{TOTAL} steps" in log
    last = checkpoints.list_checkpoints(ckpt_dir)[-1]
    assert json.loads((last / "trainer_state.json").read_text())["global_step"] == TOTAL
    assert read_metrics(output)[-1]["step"] == TOTAL
    assert (output / "final" / "adapter_model.safetensors").is_file()
    assert not [p for p in output.rglob(".staging-*")]
    assert len(checkpoints.list_checkpoints(ckpt_dir)) == 2  # spec.checkpoints.keep
