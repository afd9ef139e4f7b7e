"""Promote in the trainer (align_trainer/promote.py): a kept checkpoint becomes final/ with a model card naming its
step, atomically; a step that is not kept is an error naming spec.promote.step and the kept steps, and leaves
final/ as it was; retention (checkpoints.keep) never deletes the promoted checkpoint, also across a SIGTERM and
resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from align_api.constants import ExitCode
from align_trainer import checkpoints

from .test_trainer_resume import wait_for_checkpoint_after
from .trainer_support import manifest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def start(args: list[str], termination_log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGN_TERMINATION_LOG": str(termination_log)}
    return subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def kept(directory: Path) -> list[int]:
    return [checkpoints.step_of(p) or 0 for p in checkpoints.list_checkpoints(directory)]


def adapter_weights(directory: Path) -> dict[str, list[float]]:
    return {k: v.flatten().tolist() for k, v in load_file(str(directory / "adapter_model.safetensors")).items()}


def test_promote_publishes_the_kept_step_and_retention_keeps_it_across_a_resume(tmp_path: Path) -> None:
    config = manifest(tmp_path, "promo", "sft", "sft.openai.jsonl", hp={"maxSteps": 24, "batchSize": 4},
                      checkpoints={"everySteps": 2, "keep": 1, "volume": "ckpt"}, promote={"step": 4})
    output, term = tmp_path / "out", tmp_path / "termination-log"
    ckpt = output / "checkpoints"
    train = ["align_trainer", "--config", str(config), "--output", str(output), "--metrics-port", "-1"]
    # SIGTERM after a few saves past step 4, then resume to the end: keep=1 rotates on every save
    proc = start(train, term)
    wait_for_checkpoint_after(proc, ckpt, 6)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == ExitCode.TRANSIENT, log
    assert 4 in kept(ckpt), kept(ckpt)
    proc = start(train, term)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == ExitCode.OK and "resuming from checkpoint-" in log, log
    assert kept(ckpt) == [4, 24]                         # the newest (keep: 1) and the one spec.promote names
    trained_final = adapter_weights(output / "final")

    # promote step 4: final/ is checkpoint 4's adapter, its model card names the step and the checkpoint
    proc = start(["align_trainer.promote", "--config", str(config), "--step", "4", "--output", str(output)], term)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == ExitCode.OK, log
    record = json.loads(term.read_text())["promoted"]
    assert record == {"step": 4, "source": "pvc://ckpt/promo/checkpoints/checkpoint-4",
                      "adapter": str(output / "final")}
    promoted = adapter_weights(output / "final")
    assert promoted == adapter_weights(ckpt / "checkpoint-4") != trained_final
    card = (output / "final" / "README.md").read_text()
    assert "for 4 optimizer steps" in card and "Promoted checkpoint: step 4" in card
    assert "pvc://ckpt/promo/checkpoints/checkpoint-4" in card
    assert json.loads((output / "promoted.json").read_text()) == {"steps": [4]}
    assert not list(output.glob(".staging-*"))

    # a step that is not kept: the error names the field and the kept steps; final/ is untouched
    before = {p.name: p.read_bytes() for p in (output / "final").iterdir()}
    proc = start(["align_trainer.promote", "--config", str(config), "--step", "6", "--output", str(output)], term)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == ExitCode.CONFIG_ERROR, log
    assert term.read_text() == (f"PromoteStepNotFound: spec.promote.step: no checkpoint at step 6 in {ckpt}; "
                                "kept: 4, 24")
    assert {p.name: p.read_bytes() for p in (output / "final").iterdir()} == before
    assert json.loads((output / "promoted.json").read_text()) == {"steps": [4]}
