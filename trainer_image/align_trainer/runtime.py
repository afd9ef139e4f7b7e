"""The contract between the trainer's plumbing and the algorithm modules.

Every algorithm module under `algorithms/` exposes::

    DATA: DataKind                      # which TRL dataset type it trains on (the entry point loads it)
    def run(ctx: TrainContext) -> TrainResult
    def data_kind(spec) -> DataKind     # optional: when the kind depends on the spec (iterative dpo/rpo: prompts)

Everything that is not the algorithm itself (the validated manifest, paths, device and dtype, tokenizer,
model loading, data, metrics, checkpoints, SIGTERM, final artifacts) is prepared by the entry point
(`align_trainer.main`) and reached through `ctx`. A TRL-backed module is a dozen lines::

    from trl import DPOConfig, DPOTrainer
    DATA = DataKind.PREFERENCE

    def run(ctx: TrainContext) -> TrainResult:
        args = ctx.trainer_args(DPOConfig, beta=ctx.hp.beta, loss_type=["sigmoid"])
        trainer = DPOTrainer(model=ctx.models.policy(), args=args, train_dataset=ctx.train_dataset,
                             eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer,
                             callbacks=ctx.callbacks)
        ctx.models.bind_reference(trainer.model)   # make TRL's "ref" adapter follow spec.model.reference
        return ctx.train(trainer)                  # resume, train, checkpoint, final adapter, TrainResult

A module with its own loop (no TRL trainer) uses the same pieces by hand: `ctx.models.policy()`,
`ctx.metrics.log(...)` each step (raises `Diverged` on NaN/inf loss or grad norm), `ctx.stop_requested()`
after each step (SIGTERM: save a checkpoint with `ctx.save_checkpoint(...)` and return
`ctx.interrupted(step)`), and `ctx.finish(model, step=..., metrics=...)` at the end.

Reference convention (shared with TRL's DPO/KTO/GRPO/RLOO trainers): the policy is a `PeftModel` whose
trainable adapter is named "default". If the model also has an adapter named "ref", that frozen adapter
is the reference; otherwise the reference is the base with adapters disabled (`model.disable_adapter()`).
`spec.model.reference.kind == "precomputed"` means reference log-probs are computed once before training
(`ctx.precompute_reference` is True; TRL's `precompute_ref_log_probs`) from the starting policy: the base,
or the adapter.init adapter when one is set (TRL copies it to "ref" before precomputing).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from align_api import AlignmentJob, AlignmentJobSpec
from align_api.hyperparameters import Hyperparameters

from .contracts import DataKind, DeviceChoice, MetricsSink, ModelProvider, Paths, TrainResult
from .errors import (ConfigError, DataError, Diverged, EvaluationGateFailed, Interrupted, TrainerError,
                     UpstreamError)

if TYPE_CHECKING:  # heavy imports only for type checkers: importing runtime must stay cheap
    import datasets
    from transformers import PreTrainedTokenizerBase, TrainerCallback

__all__ = [
    "ConfigError", "DataError", "DataKind", "DeviceChoice", "Diverged", "EvaluationGateFailed", "Interrupted",
    "MetricsSink", "ModelProvider", "Paths", "TrainContext", "TrainResult", "TrainerError", "UpstreamError",
]


@dataclass
class TrainContext:
    """Everything an algorithm needs. Built by `align_trainer.main.build_context`; tests may build their own."""

    job: AlignmentJob
    paths: Paths
    device: DeviceChoice
    tokenizer: "PreTrainedTokenizerBase"
    models: ModelProvider
    metrics: MetricsSink
    #: Training rows in the algorithm's DATA kind (a `datasets.Dataset`), already validated.
    train_dataset: "datasets.Dataset | None" = None
    #: spec.data.eval (or an eval_fraction hold-out) in the same kind; None when there is none.
    eval_dataset: "datasets.Dataset | None" = None
    #: Pass these to every TRL trainer: metrics/divergence, SIGTERM checkpointing, progress log.
    callbacks: list["TrainerCallback"] = field(default_factory=list)
    #: The newest valid checkpoint in paths.checkpoint_dir, if this is a restart with the same output.
    resume_from: Path | None = None
    #: Set by the SIGTERM handler; algorithms with their own loop poll `stop_requested()`.
    stop_event: Any = None
    #: Called as hook(ctx, model, result) after the final adapter is written locally and before it is
    #: uploaded (evaluation gates live here: raising EvaluationGateFailed keeps the adapter unpublished).
    before_publish: list[Callable[["TrainContext", Any, "TrainResult"], None]] = field(default_factory=list)
    #: `--output` given: it overrides spec.output.uri, everything stays local (see `output_uri`).
    keep_local: bool = False
    #: The SIGTERM handler in place before the trainer's own (restored when the run ends).
    previous_sigterm_handler: Any = None

    # --- views of the spec -------------------------------------------------------------------------
    @property
    def spec(self) -> AlignmentJobSpec:
        return self.job.spec

    @property
    def hp(self) -> Hyperparameters:
        return self.job.spec.hyperparameters

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def output_uri(self) -> str | None:
        """Where the final adapter (and the evaluation report) are uploaded: spec.output.uri, unless kept local."""
        return None if self.keep_local else self.spec.output.uri

    @property
    def precompute_reference(self) -> bool:
        """spec.model.reference.kind == "precomputed": compute reference log-probs once, before training."""
        return self.spec.model.reference.kind == "precomputed"

    def stop_requested(self) -> bool:
        """True once SIGTERM arrived (on any rank: a collective, so every rank calls it at the same point of
        its loop): save a checkpoint and return `self.interrupted(step)`."""
        from . import distributed
        return distributed.any_rank(bool(self.stop_event is not None and self.stop_event.is_set()))

    # --- TRL glue ----------------------------------------------------------------------------------
    def trainer_args(self, config_cls: type, **algorithm_args: Any) -> Any:
        """A TRL config (DPOConfig, GRPOConfig, ...) filled from spec.hyperparameters/checkpoints/device.

        `algorithm_args` override or add algorithm-specific fields; keys the config class does not have are
        dropped silently only when they come from the common set below (so one helper serves every TRL
        config), but an unknown key in `algorithm_args` is a programming error and raises TypeError.
        """
        common = common_trainer_args(self)
        names = {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else \
            set(inspect.signature(config_cls).parameters)
        unknown = set(algorithm_args) - names
        if unknown:
            raise TypeError(f"{config_cls.__name__} has no field(s) {sorted(unknown)}")
        kwargs = {k: v for k, v in common.items() if k in names}
        kwargs.update(algorithm_args)
        return config_cls(**kwargs)

    def train(self, trainer: Any) -> TrainResult:
        """Run a TRL/HF trainer to the end: atomic checkpoints, resume, SIGTERM, final adapter, upload.

        Raises Diverged (NaN/inf), Interrupted (SIGTERM; a checkpoint was saved) or lets other errors through.
        """
        from .checkpoints import run_hf_trainer
        return run_hf_trainer(self, trainer)

    def stage_callbacks(self, stage: str) -> list["TrainerCallback"]:
        """Callbacks for a TRL trainer run as one stage inside an algorithm (a warm-up, a DPO round, a reward
        model): NaN/inf stops the job as Diverged, SIGTERM stops the stage (then check `stop_requested()`)."""
        from .callbacks import StageCallback
        return [StageCallback(stage, self.metrics, self.stop_event)]  # type: ignore[arg-type]

    # --- for algorithms with their own loop ------------------------------------------------------------
    def save_checkpoint(self, model: Any, step: int, state: Mapping[str, Any] | None = None) -> Path:
        """Atomically save `checkpoint-<step>/` (adapter + `state` as JSON/torch) and rotate to spec.checkpoints.keep.
        Rank 0 writes; every rank calls it and returns once the checkpoint is complete."""
        from . import distributed
        from .checkpoints import save_custom_checkpoint
        target = self.paths.checkpoint_dir / f"checkpoint-{step}"
        if distributed.is_main():
            target = save_custom_checkpoint(self, distributed.unwrap(model), step, state or {})
        distributed.barrier()
        return target

    def interrupted(self, step: int) -> Interrupted:
        """The exception to raise after a SIGTERM checkpoint at `step` (exit code TRANSIENT: the pod restarts)."""
        return Interrupted(f"terminated by SIGTERM at step {step}; checkpoint saved, a restart resumes from it")

    def finish(self, model: Any, *, step: int, total_steps: int | None, metrics: Mapping[str, float] | None = None,
               eval_metrics: Mapping[str, float] | None = None) -> TrainResult:
        """Write the final adapter + model card atomically, merge/upload per spec.output, return the result.
        Under torchrun every rank calls it: the ranks' policies are checked to be equal, rank 0 publishes."""
        from .checkpoints import publish_final
        from .distributed import check_in_sync
        check_in_sync(model)
        return publish_final(self, model, step=step, total_steps=total_steps, metrics=dict(metrics or {}),
                             eval_metrics=dict(eval_metrics or {}))


#: Extra arguments of the learning-rate schedules that need them (transformers' cosine_with_min_lr refuses to
#: run without a floor): shared by HF's Trainer (lr_scheduler_kwargs) and our own loops (online.learning_rate_at).
SCHEDULER_KWARGS: dict[str, dict[str, float]] = {"cosine_with_min_lr": {"min_lr_rate": 0.1}}


def common_trainer_args(ctx: TrainContext) -> dict[str, Any]:
    """TrainingArguments shared by every algorithm, from the spec. Checkpoint rotation is ours (atomic), so
    HF's own `save_total_limit` stays off."""
    from .accel import speedup_args
    hp, dev = ctx.hp, ctx.device
    has_eval = ctx.eval_dataset is not None
    from .distributed import trainer_parallelism
    return dict(
        **speedup_args(hp, dev.device),
        **trainer_parallelism(ctx.spec.resources, dev.device),
        output_dir=str(ctx.paths.checkpoint_dir),
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps or -1,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        lr_scheduler_kwargs=SCHEDULER_KWARGS.get(hp.lr_scheduler, {}),
        warmup_steps=hp.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        seed=hp.seed,
        data_seed=hp.seed,
        gradient_checkpointing=hp.gradient_checkpointing,
        bf16=dev.bf16,
        fp16=dev.fp16,
        use_cpu=dev.device == "cpu",
        logging_steps=hp.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss must reach the metrics (and stop the run), not be averaged away
        eval_strategy=("steps" if hp.eval_steps else "epoch") if has_eval else "no",
        eval_steps=hp.eval_steps,
        save_strategy="steps",
        save_steps=ctx.spec.checkpoints.every_steps,
        save_total_limit=None,
        report_to="none",
        disable_tqdm=True,  # our progress callback logs plain lines (pods have no TTY)
        max_length=hp.max_length,
        dataloader_num_workers=0,
        precompute_ref_log_probs=ctx.precompute_reference,
    )
