"""The callback of inner TRL stages (ReFT's warm-up, TPO's DPO rounds, RLAIF's reward model): a NaN/inf loss
stops the job as Diverged, SIGTERM stops the stage."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from align_trainer.callbacks import StageCallback
from align_trainer.errors import Diverged
from align_trainer.metrics import Metrics


def test_stage_callback_diverges_on_nan_and_stops_on_sigterm(tmp_path: Path) -> None:
    metrics = Metrics("job", tmp_path / "metrics.jsonl", port=None, status_file=tmp_path / "status.json")
    stop = threading.Event()
    callback = StageCallback("reft warm-up", metrics, stop)
    args, state, control = TrainingArguments(output_dir=str(tmp_path), use_cpu=True), TrainerState(), TrainerControl()
    callback.on_log(args, state, control, logs={"loss": 0.5, "grad_norm": 1.0})
    callback.on_step_end(args, state, control)
    assert not control.should_training_stop
    stop.set()
    callback.on_step_end(args, state, control)
    assert control.should_training_stop
    with pytest.raises(Diverged, match="reft warm-up diverged"):
        callback.on_log(args, state, control, logs={"loss": float("nan")})
    assert '"Diverged"' in (tmp_path / "status.json").read_text()
    metrics.close()


def test_stage_callback_diverges_on_an_overflowed_residual_stream(tmp_path: Path) -> None:
    """An inner stage whose model overflowed logs a finite loss (ln |V|) and a zero grad norm: the watch the
    metrics sink keeps on every trainable model still stops it."""
    import math

    import torch
    from peft import LoraConfig, get_peft_model

    from align_trainer import builtin
    model = get_peft_model(builtin.build_model("tiny"), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    metrics = Metrics("job", None)
    metrics.watch(model)
    callback = StageCallback("rlaif reward model", metrics, None)
    args, state, control = TrainingArguments(output_dir=str(tmp_path), use_cpu=True), TrainerState(), TrainerControl()
    ids = torch.randint(0, 256, (2, 8))
    with torch.no_grad():
        model(input_ids=ids)
    callback.on_log(args, state, control, logs={"loss": 5.0, "grad_norm": 1.0})  # healthy
    with torch.no_grad():
        model.get_base_model().model.layers[-1].mlp.down_proj.weight.mul_(1e25)
        model(input_ids=ids)
    with pytest.raises(Diverged, match="rlaif reward model diverged .*activations/residual_rms_max=inf"):
        callback.on_log(args, state, control, logs={"loss": math.log(261), "grad_norm": 0.0})
