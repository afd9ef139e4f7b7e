"""Promote: publish a kept checkpoint as the job's final adapter (spec.promote.step).

`python -m align_trainer.promote --config FILE --step N [--output DIR]`: the operator runs it in a one-pod Job
(`<job>-promote-<N>`) on the job's checkpoint volume once training has ended; locally it runs as is.

Nothing is half-written: checkpoint N is loaded as the policy (the path `adapter.init` takes), its adapter,
tokenizer and model card (naming step N and the checkpoint) are written to a staging directory, the evaluation
gates (spec.evaluation.gates) are re-run on that adapter, and only then is it renamed over final/
(checkpoints.commit_dir) and uploaded to spec.output.uri. A failed gate leaves final/ as it was (the rejected
adapter goes to gate-failed/). The step is recorded in promoted.json before anything is published, and retention
(checkpoints.rotate) never deletes a step recorded there. The termination message is one JSON object
(`{"promoted": {...}}`) the operator copies into status.promotion; errors are `<Reason>: <message>` as the
trainer's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Sequence

import align_api
from align_api.constants import Algorithm, ExitCode, Reason

from . import checkpoints, storage
from .checkpoint_index import PREFIX, index, list_checkpoints, step_of
from .errors import ConfigError, PromoteStepNotFound, TrainerError
from .main import (build_context, data_kind, evaluation_hook, load_algorithm, load_job, output_dir, quiet_libraries,
                   write_termination_log, write_termination_message)
from .modelcard import model_card

log = logging.getLogger("align_trainer.promote")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m align_trainer.promote", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="AlignmentJob manifest (YAML)")
    parser.add_argument("--step", required=True, type=int, help="the kept checkpoint's step (spec.promote.step)")
    parser.add_argument("--output", type=Path, default=None,
                        help="the job's local output directory (as the trainer's --output); nothing is uploaded")
    return parser.parse_args(argv)


def find_checkpoint(checkpoint_dir: Path, step: int) -> Path:
    """checkpoint-<step>, valid; PromoteStepNotFound naming spec.promote.step and the kept steps otherwise."""
    kept = [s for s in (step_of(p) for p in list_checkpoints(checkpoint_dir)) if s is not None]
    path = checkpoint_dir / f"{PREFIX}{step}"
    if step not in kept:
        raise PromoteStepNotFound(f"spec.promote.step: no checkpoint at step {step} in {checkpoint_dir}; kept: "
                                  + (", ".join(map(str, kept)) or "none"))
    problem = checkpoints.validate(path)
    if problem is not None:
        raise PromoteStepNotFound(f"spec.promote.step: the checkpoint at step {step} is not usable ({problem}); "
                                  f"kept: {', '.join(map(str, kept))}")
    return path


def record_promoted(output: Path, step: int) -> None:
    """Add `step` to promoted.json (atomically: written aside, then renamed), so retention spares it."""
    steps = sorted(checkpoints.promoted_steps(output) | {step})
    tmp = output / f".{checkpoints.PROMOTED_FILE}.tmp"
    tmp.write_text(json.dumps({"steps": steps}), encoding="utf-8")
    tmp.replace(output / checkpoints.PROMOTED_FILE)


def source_uri(job: align_api.AlignmentJob, path: Path) -> str:
    """The checkpoint as status.checkpoints names it (pvc://...), else its path."""
    volume = job.spec.checkpoints.volume
    return f"pvc://{volume}/{job.name}/checkpoints/{path.name}" if volume else str(path)


def promote(job: align_api.AlignmentJob, step: int, *, manifest: Path, output: Path, keep_local: bool) -> dict[str, Any]:
    """Publish checkpoint `step` as final/; returns the record for status.promotion."""
    from .contracts import Paths
    paths = Paths.under(output, manifest.resolve().parent, manifest)
    checkpoints.clean_staging(paths.output_dir)  # what a promote pod killed mid-write left aside (training ended)
    checkpoint = find_checkpoint(paths.checkpoint_dir, step)
    source = source_uri(job, checkpoint)
    record_promoted(paths.output_dir, step)  # before anything is published: no later save may rotate it away
    module = load_algorithm(job.spec.algorithm.value)
    quiet_libraries()
    ctx = build_context(job, manifest=manifest, output=output, data_kind=data_kind(module, job.spec),
                        metrics_port=None, promote_from=checkpoint)
    ctx.keep_local = keep_local
    try:
        return _publish(ctx, job, step, checkpoint, source)
    finally:
        ctx.metrics.close()  # type: ignore[attr-defined]
        if ctx.previous_sigterm_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, ctx.previous_sigterm_handler)  # in-process callers get theirs back


def _publish(ctx: Any, job: align_api.AlignmentJob, step: int, checkpoint: Path, source: str) -> dict[str, Any]:
    from .models import DEFAULT_ADAPTER, _unwrap_peft, portable_base_reference
    paths = ctx.paths
    model = ctx.models.sequence_classifier() if job.spec.algorithm == Algorithm.REWARD else ctx.models.policy()
    model.eval()
    numbers = next((r for r in index(paths.checkpoint_dir, paths.metrics_file) if r["step"] == step), {})
    staging = checkpoints.staging_dir(paths.output_dir)
    peft_model = _unwrap_peft(model)
    peft_model.save_pretrained(str(staging), selected_adapters=[DEFAULT_ADAPTER])
    portable_base_reference(staging, job.spec.model.base)
    ctx.tokenizer.save_pretrained(str(staging))
    (staging / "README.md").write_text(model_card(ctx, step=step, metrics=numbers.get("metrics") or {},
                                                  eval_metrics=numbers.get("evaluation") or {},
                                                  promoted_from=source), encoding="utf-8")
    outcome = None
    if evaluation_hook(ctx) is not None:  # the job evaluates: its gates judge the promoted adapter, staged
        from .evaluation.hook import evaluate_before_publish, prepare
        prepare(ctx)
        staged = dataclasses.replace(ctx, paths=dataclasses.replace(ctx.paths, final_dir=staging))
        outcome = evaluate_before_publish(staged, model)  # EvaluationGateFailed: final/ stays as it was
    checkpoints.commit_dir(staging, paths.final_dir)
    adapter = str(paths.final_dir)
    if ctx.output_uri:
        adapter = storage.upload(paths.final_dir, ctx.output_uri, base_dir=paths.base_dir, name="adapter")
    log.info("promoted checkpoint %d (%s) to %s", step, source, adapter)
    record: dict[str, Any] = {"step": step, "source": source, "adapter": adapter}
    if outcome is not None:
        record["evaluation"] = storage.json_safe(dict(outcome.metrics))
        record["gates"] = [g.message for g in outcome.gates]
    return record


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=os.environ.get("ALIGN_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        job = load_job(args.config)
        if args.step < 1:
            raise ConfigError(f"--step {args.step}: spec.promote.step is 1 or more")
        record = promote(job, args.step, manifest=args.config, output=output_dir(job, args.output),
                         keep_local=args.output is not None)
        write_termination_log(json.dumps({"promoted": record})[:4096])
        print(f"== {job.name}: checkpoint {record['step']} promoted: {record['adapter']}", flush=True)
        return ExitCode.OK
    except TrainerError as exc:
        log.error("%s: %s", exc.reason, exc)
        write_termination_message(exc.reason, str(exc))
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001  (a crash: transient, like the trainer's)
        log.error("%s", traceback.format_exc())
        write_termination_message(Reason.TRAINER_ERROR, f"{type(exc).__name__}: {exc}")
        return ExitCode.TRANSIENT


if __name__ == "__main__":
    sys.exit(run())
