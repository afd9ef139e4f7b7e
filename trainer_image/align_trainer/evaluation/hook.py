"""Where evaluation meets the trainer: before the final adapter is published, and at checkpoints.

`after_training(ctx, model, result)` is one of `ctx.before_publish` (the entry point registers it): the
final adapter has just been written to final/ and nothing is uploaded yet. It evaluates the model in
memory and writes evaluation.json, report.md and the PNGs to the output directory. A failed gate raises
`EvaluationGateFailed` (exit code 13): final/ is renamed to gate-failed/ (kept for inspection, never read
as the final adapter), nothing is uploaded, and the message (the termination message, then
status.lastError) names the failed gates. Without gates an evaluation that crashes is logged and does not
fail the job (it is advice); with gates it does (a gate that cannot be measured must not pass).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from align_api.constants import Reason

from .gates import failure_message
from ..errors import ConfigError, EvaluationGateFailed
from .outputs import EVALUATION_FILE, REPORT_FILE, EvaluationOutcome
from .report import fmt
from .runner import CHECKPOINT_DIR, evaluation_rows, export_gauges, plan, run

log = logging.getLogger("align_trainer.evaluation")

#: Name of the folder the evaluation is uploaded as, next to the adapter: <spec.output.uri>/evaluation/.
REMOTE_DIR = "evaluation"
#: Where final/ goes when a gate fails.
REJECTED_DIR = "gate-failed"


def _upload(ctx: Any, outcome: EvaluationOutcome) -> str | None:
    """Copy report.md, evaluation.json and the PNGs to <spec.output.uri>/evaluation/ (also for a failed gate:
    the report is how the user learns why)."""
    uri = ctx.output_uri  # None for --output runs: they keep everything local
    if not uri or outcome.directory is None:
        return None
    from .. import storage
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / REMOTE_DIR
        staging.mkdir()
        for path in [outcome.directory / EVALUATION_FILE, outcome.directory / REPORT_FILE, *outcome.charts]:
            if path.exists():
                shutil.copy2(path, staging / path.name)
        return storage.upload(staging, uri, base_dir=ctx.paths.base_dir, name=REMOTE_DIR)


def _model_card_section(outcome: EvaluationOutcome) -> str:
    rows = "\n".join(f"| {k} | {fmt(v)} |" for k, v in outcome.metrics.items())
    gates = "".join(f"\n- {'PASS' if g.passed else 'FAIL'}: {g.message}" for g in outcome.gates)
    return f"\n## Evaluation ({outcome.kind.replace('_', ' ')})\n\n| metric | value |\n|---|---|\n{rows}\n{gates}\n"


def _reject_final(ctx: Any) -> Path | None:
    """final/ -> gate-failed/: a failed adapter must not look like a final one to anything reading the volume."""
    final = ctx.paths.final_dir
    if not final.exists():
        return None
    target = ctx.paths.output_dir / REJECTED_DIR
    if target.exists():
        shutil.rmtree(target)
    final.rename(target)
    return target


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
            outcome.report_uri = f"{remote.rstrip('/')}/{REPORT_FILE}"
    except Exception as exc:  # a report that cannot be copied is no reason to fail a good model
        log.warning("could not upload the evaluation report: %s", exc)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in outcome.metrics.items() if v is not None)
    log.info("evaluation: %s; report %s", shown, outcome.report)
    if not outcome.passed:
        rejected = _reject_final(ctx)
        raise EvaluationGateFailed(failure_message(outcome.gates) + f" (report: {outcome.report}"
                                   + (f"; adapter kept unpublished in {rejected}" if rejected else "") + ")")
    card = ctx.paths.final_dir / "README.md"
    if card.exists():
        with card.open("a", encoding="utf-8") as handle:
            handle.write(_model_card_section(outcome))
    return outcome


def after_training(ctx: Any, model: Any, result: Any) -> None:
    """ctx.before_publish hook (see runtime.TrainContext): evaluate, gate, record the numbers in the result."""
    outcome = evaluate_before_publish(ctx, model)
    if outcome is not None and result is not None:
        # for the end summary and a success termination message (status.evaluation, status.artifacts.report)
        result.extra["evaluation"] = dict(outcome.metrics)
        result.extra["evaluation_report"] = outcome.report_uri or str(outcome.report)
        if outcome.scored_nothing:  # the operator sets Evaluated=False with this reason, never "passed"
            log.error("evaluation scored none of its %d samples (grader errors); see %s", outcome.unscored,
                      outcome.report)
            result.extra["evaluation_problem"] = {
                "reason": Reason.EVALUATION_UNSCORED,
                "message": f"the grader scored none of the {outcome.unscored} evaluation samples (every grading "
                           f"failed); see {outcome.report_uri or outcome.report}"}


class CheckpointEvaluation:
    """Evaluate at each checkpoint save into evaluations/step-<N>/ (spec.evaluation.atCheckpoints): evaluation.json
    and report.md, no charts (they cost more than the evaluation on small models). Never gates."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        if model is None:
            return
        out = self.ctx.paths.output_dir / CHECKPOINT_DIR / f"step-{state.global_step}"
        try:
            outcome = run(self.ctx, model, out, charts=False)  # numbers and report; charts only at the end
        except Exception:
            log.exception("evaluation at step %d failed; training continues", state.global_step)
            return
        if outcome is not None:
            export_gauges(self.ctx.metrics, self.ctx.name, outcome.metrics)


def prepare(ctx: Any) -> list[Any]:
    """Before training: fail fast on what would only break the evaluation hours later (no grader, a grader
    this image cannot run, unreadable evaluation prompts), then the checkpoint callbacks to register."""
    plan_ = plan(ctx)  # ConfigError when evaluation is asked for without a grader
    if plan_ is None:
        return []
    if plan_.grader is not None:
        from .. import graders
        try:
            graders.check_available(plan_.grader)
        except ValueError as exc:
            raise ConfigError(f"spec.evaluation grader cannot run here: {exc}") from None
    if plan_.spec.prompts is not None:
        evaluation_rows(ctx, plan_.spec, plan_.kind)  # DataError naming the file, line and field
    return checkpoint_callbacks(ctx)


def checkpoint_callbacks(ctx: Any) -> list[Any]:
    """[a TrainerCallback running CheckpointEvaluation] when spec.evaluation.atCheckpoints, else []."""
    evaluation = ctx.spec.evaluation
    if evaluation is None or not evaluation.at_checkpoints or plan(ctx) is None:
        return []
    from transformers import TrainerCallback  # here, so importing this module stays cheap

    class Callback(CheckpointEvaluation, TrainerCallback):
        pass

    return [Callback(ctx)]
