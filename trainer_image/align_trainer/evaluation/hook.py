"""Where evaluation meets the trainer: before the final adapter is published, and at checkpoints.

The trainer calls `evaluate_before_publish(ctx, model)` with the trained model in memory, after training
and before anything is written as "final". A failed gate raises `EvaluationGateFailed`: nothing is
published, the exit code is 13 and the message (the termination message, then status.lastError) names the
failed gates. Without gates an evaluation that crashes is logged and does not fail the job (it is advice);
with gates it does (a gate that cannot be measured must not pass).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .gates import failure_message
from .outputs import EVALUATION_FILE, REPORT_FILE, EvaluationOutcome
from .runner import CHECKPOINT_DIR, EvaluationGateFailed, export_gauges, plan, run

log = logging.getLogger("align_trainer.evaluation")

#: Name of the folder the evaluation is uploaded as, next to the adapter: <spec.output.uri>/evaluation/.
REMOTE_DIR = "evaluation"


def _upload(ctx: Any, outcome: EvaluationOutcome) -> str | None:
    """Copy report.md, evaluation.json and the PNGs to <spec.output.uri>/evaluation/ (also for a failed gate:
    the report is how the user learns why)."""
    uri = ctx.spec.output.uri
    if not uri or outcome.directory is None:
        return None
    from .. import storage
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / REMOTE_DIR
        staging.mkdir()
        for path in [outcome.directory / EVALUATION_FILE, outcome.directory / REPORT_FILE, *outcome.charts]:
            if path.exists():
                shutil.copy2(path, staging / path.name)
        return storage.upload(staging, uri, base_dir=ctx.paths.base_dir)


def evaluate_before_publish(ctx: Any, model: Any) -> EvaluationOutcome | None:
    """Evaluate the final model; raise EvaluationGateFailed when a gate fails. None when nothing to evaluate."""
    evaluation = ctx.spec.evaluation
    gates = list(evaluation.gates) if evaluation else []
    try:
        plan_ = plan(ctx)
        if plan_ is None or not (plan_.spec.after_training or gates):
            return None
        log.info("evaluating the %s (%s)", "reward model" if plan_.kind == "reward_model" else "policy vs reference",
                 ", ".join(gates) or "no gates")
        outcome = run(ctx, model, ctx.paths.output_dir, gates=gates, plan_=plan_)
    except Exception:
        if gates:
            raise
        log.exception("evaluation failed; the job continues because spec.evaluation has no gates")
        return None
    if outcome is None:
        return None
    export_gauges(ctx.metrics, ctx.name, outcome.metrics)
    try:
        remote = _upload(ctx, outcome)
        if remote:
            log.info("evaluation report uploaded to %s", remote)
    except Exception as exc:  # a report that cannot be copied is no reason to fail a good model
        log.warning("could not upload the evaluation report: %s", exc)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in outcome.metrics.items() if v is not None)
    log.info("evaluation: %s; report %s", shown, outcome.report)
    if not outcome.passed:
        raise EvaluationGateFailed(failure_message(outcome.gates) + f" (report: {outcome.report})")
    return outcome


class CheckpointEvaluation(TrainerCallback):
    """Evaluate at each checkpoint save into evaluations/step-<N>/ (spec.evaluation.atCheckpoints). Never gates."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        if model is None:
            return
        out = self.ctx.paths.output_dir / CHECKPOINT_DIR / f"step-{state.global_step}"
        try:
            outcome = run(self.ctx, model, out)
        except Exception:
            log.exception("evaluation at step %d failed; training continues", state.global_step)
            return
        if outcome is not None:
            export_gauges(self.ctx.metrics, self.ctx.name, outcome.metrics)


def checkpoint_callbacks(ctx: Any) -> list[TrainerCallback]:
    """[CheckpointEvaluation] when spec.evaluation.atCheckpoints, else []."""
    evaluation = ctx.spec.evaluation
    if evaluation is None or not evaluation.at_checkpoints or plan(ctx) is None:
        return []
    return [CheckpointEvaluation(ctx)]
