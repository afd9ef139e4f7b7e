"""Entry point: `python -m align_trainer --config FILE [--output DIR] [--metrics-port N]`.

Order matters for fast failure: manifest -> algorithm module -> preflight (first rows of every dataset,
grader templates, output writable, batch sizes) -> device -> data (every row validated) -> models -> training. Errors become an exit code (align_api ExitCode) and a termination message
`<Reason>: <message>` in /dev/termination-log ($ALIGN_TERMINATION_LOG), which the operator turns into
status.lastError.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

import align_api
from align_api.constants import ExitCode, Reason

from . import distributed
from .errors import ConfigError, Interrupted, TrainerError
from .runtime import DataKind, Paths, TrainContext, TrainResult
from .metrics import gauge_name
from .storage import json_safe
from .termination import MAX_TERMINATION_MESSAGE, fit, warning_records

log = logging.getLogger("align_trainer")

ENV_OUTPUT_DIR = "ALIGN_OUTPUT_DIR"
ENV_TERMINATION_LOG = "ALIGN_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m align_trainer", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="AlignmentJob manifest (YAML)")
    parser.add_argument("--output", type=Path, default=None,
                        help="local output directory; overrides spec.output.uri (nothing is uploaded)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="override spec.metrics.port; 0 = any free port, -1 = no endpoint")
    return parser.parse_args(argv)


def load_job(path: Path) -> align_api.AlignmentJob:
    try:
        jobs = align_api.load_file(path)
    except align_api.ManifestError as exc:
        raise ConfigError(f"invalid manifest:\n{exc}") from None
    if len(jobs) != 1:
        raise ConfigError(f"{path}: expected one AlignmentJob, found {len(jobs)}")
    return jobs[0]


def output_dir(job: align_api.AlignmentJob, override: Path | None) -> Path:
    """The local working directory (checkpoints, metrics.jsonl, final/): --output, else $ALIGN_OUTPUT_DIR,
    else <checkpoint volume>/<job name> when spec.checkpoints.volume is set (mounted under $ALIGN_PVC_ROOT),
    else ./runs/<name>. Resume is automatic because a restarted pod gets the same directory (and only its own run
    resumes: identity.py)."""
    from .storage import pvc_path
    if override is not None:
        return override.resolve()
    if os.environ.get(ENV_OUTPUT_DIR):
        return Path(os.environ[ENV_OUTPUT_DIR]).resolve()
    if job.spec.checkpoints.volume:
        return pvc_path(f"pvc://{job.spec.checkpoints.volume}/{job.name}")
    return (Path.cwd() / "runs" / job.name).resolve()


def load_algorithm(algorithm: str):  # type: ignore[no-untyped-def]
    from .algorithms import load
    try:
        module = load(algorithm)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("align_trainer.algorithms"):
            raise ConfigError(f"algorithm {algorithm!r} is not available in this trainer image") from None
        raise
    if not hasattr(module, "run") or not isinstance(getattr(module, "DATA", None), DataKind):
        raise ConfigError(f"algorithm module {module.__name__} must define DATA (a DataKind) and run(ctx)")
    return module


def data_kind(module: Any, spec: Any) -> DataKind:
    """The module's DATA, or what its optional `data_kind(spec)` says (iterative dpo/rpo train on prompts)."""
    choose = getattr(module, "data_kind", None)
    return choose(spec) if callable(choose) else module.DATA


def build_context(job: align_api.AlignmentJob, *, manifest: Path | None, output: Path, data_kind: DataKind,
                  metrics_port: int | None, promote_from: Path | None = None) -> TrainContext:
    """Everything but the algorithm: see runtime.TrainContext. `promote_from`: a checkpoint being promoted
    (promote.py): the policy loads it, and the run's files (identity, metrics.jsonl, checkpoints) are only read."""
    from . import checkpoints
    from .callbacks import MetricsCallback, ProgressLogCallback, SigtermCallback, install_sigterm_handler
    from .data import load_for
    from .metrics import Metrics
    from .models import Models, choose_device

    spec = job.spec
    base_dir = manifest.resolve().parent if manifest else Path.cwd()
    paths = Paths.under(output, base_dir, manifest)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    from . import identity
    # before metrics.jsonl is opened: another run's files move aside (rank 0 only; the others follow its resume)
    own = identity.claim(paths.output_dir, job) if distributed.is_main() and promote_from is None else True
    device = choose_device(spec.model, spec.hyperparameters, gpus=spec.resources.gpus_per_node)
    started = time.monotonic()
    train, evals = load_for(data_kind, spec.data, base_dir=base_dir, cache_dir=paths.cache_dir,
                            seed=spec.hyperparameters.seed)
    log.info("data: %d train rows%s (%s) in %.1fs", len(train), f", {len(evals)} eval rows" if evals else "",
             data_kind.value, time.monotonic() - started)
    model_spec = spec.model if promote_from is None else spec.model.model_copy(update={
        "adapter": spec.model.adapter.model_copy(update={"init": str(promote_from)})})
    models = Models(model_spec, device, base_dir=base_dir, cache_dir=paths.cache_dir)
    # after the base is on this pod's disk (transformers' save_pretrained writes nothing on ranks > 0 once a
    # process group exists) and before anything waits for a peer
    distributed.init(device.device, spec.resources.collective_timeout_seconds)
    main_rank = distributed.is_main()
    tokenizer = models.tokenizer()
    from .truncation import fit_dataset  # prompts cut from the left so the answers fit maxLength (TRL keeps the start)
    # the policy writes the answers: prompts leave them room (not tpo's: it wraps each query in the thought prompt
    # and checks maxLength against the wrapped prompt itself, algorithms/tpo.py)
    generated = data_kind == DataKind.PROMPT_ONLY and spec.algorithm != "tpo"
    # reward models: TRL's RewardTrainer drops a pair longer than maxLength, so their answers are cut to fit (the end
    # kept: the score is read there, as the reward_model grader's max_length cuts)
    keep_end = spec.algorithm == "reward"
    train = fit_dataset(train, tokenizer, spec.hyperparameters, "train", generated=generated, keep_answer_end=keep_end)
    evals = fit_dataset(evals, tokenizer, spec.hyperparameters, "eval", generated=generated, keep_answer_end=keep_end)
    # rank 0 writes and serves; the other ranks' sink still checks for divergence (they log the same numbers)
    training = main_rank and promote_from is None  # a promotion writes none of the run's files
    metrics = Metrics(job.name, paths.metrics_file if training else None, port=metrics_port if main_rank else None,
                      status_file=paths.output_dir / "status.json" if training else None)
    models.on_trainable.append(metrics.watch)
    stop = threading.Event()
    previous_handler = install_sigterm_handler(stop)
    resume = distributed.broadcast(checkpoints.find_resume(paths.checkpoint_dir) if training and own else None)
    if training:  # what a killed run logged after its last checkpoint is logged again by this one
        from .runstate import trim_metrics
        for record in trim_metrics(paths.metrics_file, checkpoints.step_of(resume) or 0 if resume else -1):
            metrics.latest.update({k: v for k, v in record.items() if k not in ("time", "step", "epoch")})
    if resume is not None and not resume.is_dir():
        raise ConfigError(f"rank {distributed.rank()} cannot see {resume}, the checkpoint rank 0 resumes from: "
                          "several nodes need a shared spec.checkpoints.volume (ReadWriteMany)")
    ctx = TrainContext(job=job, paths=paths, device=device, tokenizer=tokenizer, models=models, metrics=metrics,
                       train_dataset=train, eval_dataset=evals, resume_from=resume, stop_event=stop,
                       callbacks=[MetricsCallback(metrics), SigtermCallback(stop), ProgressLogCallback()])
    ctx.previous_sigterm_handler = previous_handler
    if promote_from is None:
        checkpoints.export_index(ctx)  # a resumed run lists the checkpoints it found
    from transformers import set_seed
    set_seed(spec.hyperparameters.seed)  # LoRA initialisation happens before the trainer seeds: make it reproducible
    return ctx


def quiet_libraries() -> None:
    """Pods have no TTY: progress bars of datasets/transformers only clutter `kubectl logs`."""
    import datasets
    import transformers
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def evaluation_hook(ctx: TrainContext):  # type: ignore[no-untyped-def]
    """The evaluation's `after_training(ctx, model, result)` (evaluation/hook.py) when this job evaluates and this
    image has the evaluation; else None. The plan is decided first (a light module): a job that does not evaluate
    never imports the hook and its runner (generation, scoring, graders, charts: 0.1-0.2 s of every run).
    ConfigError as plan raises it."""
    try:
        plan = importlib.import_module("align_trainer.evaluation.plan").plan
    except ModuleNotFoundError:
        return None
    if plan(ctx) is None:
        return None
    try:
        hook = importlib.import_module("align_trainer.evaluation.hook")
    except ModuleNotFoundError:
        return None
    return getattr(hook, "after_training", None)


def write_termination_log(text: str) -> None:
    """The container's termination message (what the operator reads back), cut to the kubelet's limit."""
    path = Path(os.environ.get(ENV_TERMINATION_LOG) or DEFAULT_TERMINATION_LOG)
    try:
        path.write_bytes(text.encode("utf-8", errors="replace")[:MAX_TERMINATION_MESSAGE])
    except OSError:
        pass  # not in a pod (no /dev/termination-log): the log has the message


def write_termination_message(reason: str, message: str) -> None:
    write_termination_log(f"{reason}: {message}")


def success_message(result: TrainResult, metrics_file: Path | None = None,
                    warnings: Sequence[Mapping[str, Any]] = ()) -> str:
    """The JSON termination message of a successful run: artifacts, step counts, final numbers, the evaluation
    and the warnings the run went on with (the operator copies them into status; the gauges vanish with the
    pod, and a run may end before the operator's next scrape). At most 4096 bytes, cut as termination.fit
    says (never the artifacts, never a warning's reason). NaN/inf become null."""
    artifacts = {"adapter": str(result.adapter_uri or result.adapter_dir or "") or None,
                 "merged": str(result.merged_uri or result.merged_dir or "") or None,
                 "report": result.extra.get("evaluation_report"),
                 "metrics": str(metrics_file) if metrics_file is not None else None}
    numbers = {**result.metrics, **result.eval_metrics}
    evaluation = result.extra.get("evaluation") or {}
    doc: dict = json_safe({
        "artifacts": {k: v for k, v in artifacts.items() if v}, "steps": result.steps,
        "totalSteps": result.total_steps,
        # the gauge spelling ("rewards_accuracies"): status.metrics merges these with scraped gauges, one key each
        "finalMetrics": {gauge_name(k): float(v) for k, v in numbers.items() if isinstance(v, (int, float))},
        "evaluation": {k: v if v is None else float(v) for k, v in evaluation.items()
                       if isinstance(v, (int, float)) or v is None}})
    if result.extra.get("evaluation_problem"):
        doc["evaluationProblem"] = result.extra["evaluation_problem"]  # -> Evaluated=False, never "passed"
    if result.checkpoint_index:  # the kept checkpoints (status.checkpoints), newest last
        doc["checkpointIndex"] = json_safe(result.checkpoint_index[-10:])
    if warnings:  # -> the warning's condition and one event (operator: status/warnings.py)
        doc["warnings"] = warning_records(warnings)
    return fit(doc, MAX_TERMINATION_MESSAGE)


def summary(job: align_api.AlignmentJob, result: TrainResult, seconds: float) -> str:
    keys = ("loss", "rewards/accuracies", "rewards/margins", "accuracy", "mean_token_accuracy")
    lines = [f"== {job.name}: {job.spec.algorithm.value} finished: {result.steps}/{result.total_steps} steps "
             f"in {seconds:.1f}s" + (f" (resumed from {result.resumed_from.name})" if result.resumed_from else "")]
    shown = {k: v for k, v in result.metrics.items() if k in keys}
    shown.update({k: v for k, v in result.eval_metrics.items() if k.removeprefix("eval_") in keys})
    if shown:
        lines.append("   " + "  ".join(f"{k}={v:.4g}" for k, v in shown.items()))
    lines.append(f"   adapter: {result.adapter_uri or result.adapter_dir}")
    if result.merged_dir:
        lines.append(f"   merged:  {result.merged_uri or result.merged_dir}")
    return "\n".join(lines)


def settle_startup_heap() -> None:
    """Start the cyclic garbage collector for training, with what startup built out of its sight.

    Startup (torch, transformers, TRL, datasets, the spec models, the data, the model) allocates some 450k
    container objects that live as long as the process. With the collector on, every full collection walks
    all of them: in the DPO run of bench/trainer_overhead.py, 8 full collections during startup and one when
    training ends (accelerate's free_memory calls gc.collect) took about 3 s of CPU under load, against 1.6 s
    in a plain TRL script, which holds fewer objects (docs/performance.md). So `main` keeps the
    collector off during startup, and here, just before training, moves every object alive into the
    permanent generation (gc.freeze): later collections, automatic or explicit, walk only what training
    allocates. The price: reference cycles that became garbage during startup are never freed (about 12k
    objects and no measurable RSS for that job)."""
    gc.freeze()
    gc.enable()


def run(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """One training run. `own_process`: the process exists for this run (`python -m align_trainer`), so the
    garbage collector is tuned for it (settle_startup_heap); in-process callers (tests) keep theirs."""
    if own_process:
        gc.disable()  # until settle_startup_heap, just before training
    args = parse_args(argv)
    logging.basicConfig(level=os.environ.get("ALIGN_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    ctx: TrainContext | None = None
    try:
        job = load_job(args.config)
        module = load_algorithm(job.spec.algorithm.value)
        output = output_dir(job, args.output)
        from . import preflight  # data, grader templates, output, batch sizes: seconds, before any model
        preflight.run(job, base_dir=args.config.resolve().parent, output_dir=output, kind=data_kind(module, job.spec),
                      manifest=args.config, upload=args.output is None)
        quiet_libraries()  # imports datasets and transformers: seconds a failing preflight need not wait for
        port = args.metrics_port if args.metrics_port is not None else job.spec.metrics.port
        ctx = build_context(job, manifest=args.config, output=output, data_kind=data_kind(module, job.spec),
                            metrics_port=None if port < 0 else port)
        if args.output is not None:
            ctx.keep_local = True  # --output overrides spec.output.uri: keep everything local
        hook = evaluation_hook(ctx)
        if hook is not None:
            # --- evaluation: check its grader and prompts before training, evaluate at checkpoints (evaluation/hook.py) ---
            from .evaluation.hook import prepare
            callbacks = prepare(ctx)  # every rank fails fast on a bad evaluation spec; rank 0 evaluates
            if distributed.is_main():
                ctx.before_publish.append(hook)
                ctx.callbacks.extend(callbacks)
            # --- end evaluation ---
        log.info("%s: %s on %s (%s, %s), output %s%s", job.name, job.spec.algorithm.value, job.spec.model.base,
                 ctx.device.device, ctx.device.dtype, ctx.paths.output_dir,
                 f", resuming from {ctx.resume_from.name}" if ctx.resume_from else "")
        if own_process:
            settle_startup_heap()
        result = module.run(ctx)
        if distributed.is_main():  # rank 0 published; its message is the pod's
            ctx.metrics.write_status(state="Succeeded", adapter=str(result.adapter_uri or result.adapter_dir))
            write_termination_log(success_message(result, ctx.paths.metrics_file,
                                                  ctx.metrics.reported_warnings()))
            print(summary(job, result, time.monotonic() - started), flush=True)
        return ExitCode.OK
    except TrainerError as exc:
        log.error("%s: %s", exc.reason, exc)
        write_termination_message(exc.reason, str(exc))
        if ctx is not None and not isinstance(exc, Interrupted):
            ctx.metrics.write_status(state="Failed", reason=exc.reason, message=str(exc))
        return exc.exit_code
    except Exception as exc:  # a crash (OOM in Python, disk full, a bug): transient, the Job may retry
        log.error("%s", traceback.format_exc())
        write_termination_message(Reason.TRAINER_ERROR, f"{type(exc).__name__}: {exc}")
        return ExitCode.TRANSIENT
    finally:
        distributed.destroy()
        if ctx is not None:
            ctx.metrics.close()  # type: ignore[attr-defined]
            previous = ctx.previous_sigterm_handler
            if previous is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)  # in-process callers (tests, sandbox) get theirs back


def main() -> None:
    sys.exit(run(own_process=True))


__all__ = ["build_context", "main", "run"]
