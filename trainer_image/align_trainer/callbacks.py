"""TRL/transformers callbacks every algorithm gets through `ctx.callbacks`: metrics + divergence, SIGTERM
checkpointing, and a progress log that reads well in `kubectl logs` (no TTY, so no tqdm bars)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from . import distributed
from .metrics import Metrics, tokens_per_second

log = logging.getLogger("align_trainer")


class MetricsCallback(TrainerCallback):
    """Forwards every log to the metrics sink (which raises Diverged on NaN/inf) and keeps progress current."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._tokens: tuple[float, float] | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        self.metrics.progress(step=state.global_step, total_steps=state.max_steps, epoch=state.epoch)
        self.metrics.write_status(state="Running")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        self.metrics.progress(step=state.global_step, total_steps=state.max_steps, epoch=state.epoch)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **_: Any) -> None:
        logs = dict(logs or {})
        tokens = logs.get("num_tokens") or (state.num_input_tokens_seen or None)
        if tokens and not any(k.startswith("eval_") for k in logs):
            now = time.monotonic()
            rate = tokens_per_second(self._tokens, float(tokens), now)
            if rate is not None:
                logs["tokens_per_second"] = rate
            self._tokens = (now, float(tokens))
        self.metrics.progress(step=state.global_step, total_steps=state.max_steps, epoch=state.epoch)
        self.metrics.log(logs, step=state.global_step, epoch=state.epoch)
        self.metrics.write_status(state="Running")


class SigtermCallback(TrainerCallback):
    """On SIGTERM (pod deletion, preemption, suspend) checkpoint after the current step and stop."""

    def __init__(self, stop_event: threading.Event) -> None:
        self.stop_event = stop_event

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        # a collective under torchrun: a SIGTERM to any one rank stops all of them at the same step
        if distributed.any_rank(self.stop_event.is_set()):
            log.warning("SIGTERM: saving a checkpoint at step %d and stopping", state.global_step)
            control.should_save = True
            control.should_training_stop = True


class StageCallback(TrainerCallback):
    """For a TRL trainer that runs inside an algorithm (ReFT's warm-up, TPO's DPO rounds, RLAIF's reward model):
    the outer loop owns the step counter, progress and checkpoints, but a NaN/inf loss or grad norm (or an
    overflowed residual stream, numerics.py) still stops the job as Diverged, and SIGTERM stops the stage at once
    (the caller then raises Interrupted)."""

    def __init__(self, stage: str, metrics: Metrics, stop_event: threading.Event | None) -> None:
        self.stage, self.metrics, self.stop_event = stage, metrics, stop_event

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **_: Any) -> None:
        from .errors import Diverged
        from .metrics import DIVERGENCE_KEYS, is_bad
        from .numerics import RESIDUAL_KEY
        values = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        peak = self.metrics.residual.read()  # the stage's own forward passes (an overflow gives no NaN loss)
        if peak is not None:
            values[RESIDUAL_KEY] = peak
        bad = [k for k in DIVERGENCE_KEYS if k in values and is_bad(values[k])]
        if bad:
            self.metrics.write_status(state="Diverged")
            raise Diverged(f"{self.stage} diverged at its step {state.global_step}: "
                           + ", ".join(f"{k}={values[k]}" for k in bad)
                           + " (try a lower learningRate, a smaller maxGradNorm or fp32 precision)")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            control.should_training_stop = True


def install_sigterm_handler(stop_event: threading.Event) -> Any:
    """SIGTERM sets the event (the kubelet's grace period is the time to finish the step and checkpoint);
    a second SIGTERM exits at once. Returns the previous handler (to restore), None off the main thread."""

    def handler(signum: int, _frame: Any) -> None:
        if stop_event.is_set():
            raise SystemExit(128 + signum)
        log.warning("received signal %d: will checkpoint after the current step", signum)
        stop_event.set()

    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, handler)
    return None


class ProgressLogCallback(TrainerCallback):
    """One line per log: `step 12/40 (30%) loss=0.61 rewards/margins=0.42 eta 8s`."""

    KEYS = ("loss", "grad_norm", "rewards/margins", "rewards/accuracies", "accuracy", "mean_token_accuracy",
            "reward", "kl", "eval_loss", "eval_rewards/accuracies", "eval_accuracy")

    def __init__(self) -> None:
        self._start: float | None = None
        self._start_step = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any) -> None:
        self._start, self._start_step = time.monotonic(), state.global_step

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **_: Any) -> None:
        if distributed.is_main():  # one line per step in `kubectl logs`, not one per rank
                print(progress_line(state.global_step, state.max_steps, logs or {}, self._start, self._start_step),
                  flush=True)


def progress_line(step: int, total: int | None, logs: dict[str, Any], start: float | None, start_step: int) -> str:
    parts = [f"step {step}/{total}" + (f" ({100 * step / total:.0f}%)" if total else "")]
    parts += [f"{k}={logs[k]:.4g}" for k in ProgressLogCallback.KEYS if isinstance(logs.get(k), (int, float))]
    if start is not None and total and step > start_step:
        elapsed = time.monotonic() - start
        parts.append(f"eta {elapsed / (step - start_step) * (total - step):.0f}s")
    return " ".join(parts)
