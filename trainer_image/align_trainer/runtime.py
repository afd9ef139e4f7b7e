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
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from align_api import AlignmentJob, AlignmentJobSpec
from align_api.hyperparameters import Hyperparameters

from .errors import (ConfigError, DataError, Diverged, EvaluationGateFailed, Interrupted, TrainerError,
                     UpstreamError)

if TYPE_CHECKING:  # heavy imports only for type checkers: importing runtime must stay cheap
    import datasets
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

__all__ = [
    "ConfigError", "DataError", "DataKind", "DeviceChoice", "Diverged", "EvaluationGateFailed", "Interrupted",
    "MetricsSink", "ModelProvider", "Paths", "TrainContext", "TrainResult", "TrainerError", "UpstreamError",
]


class DataKind(StrEnum):
    """The dataset type an algorithm trains on. Rows are normalised to TRL's column names.

    Conversational rows carry lists of {role, content} messages; standard rows carry strings. Extra
    columns of the source (e.g. a reference `answer` for graders) are kept for PROMPT_ONLY.
    """

    #: {"messages": [...]} (each message may carry `weight` 0/1: train on that assistant turn or not),
    #: {"prompt", "completion"} or {"text"}. Used by sft (and reft's warm-up).
    SFT = "sft"
    #: {"prompt", "chosen", "rejected"}: explicit prompt, conversational or standard. dpo, cpo, simpo, orpo, reward.
    PREFERENCE = "preference"
    #: {"prompt", "completion", "label": bool}: kto. Pairs are split into one desirable + one undesirable row.
    UNPAIRED = "unpaired"
    #: {"prompt", ...extra columns}: online algorithms generate the completion; graders read the extras.
    PROMPT_ONLY = "prompt_only"


@dataclass(frozen=True)
class Paths:
    """Where things are on the local disk of the pod."""

    #: Directory of the manifest: relative data/model paths in the spec resolve against it.
    base_dir: Path
    #: The job's local output directory (`--output`, else derived from spec.output / spec.checkpoints).
    output_dir: Path
    #: Periodic checkpoints `checkpoint-<step>/` (TRL/HF layout), written atomically.
    checkpoint_dir: Path
    #: The final adapter (PEFT safetensors + README.md model card); only appears complete (renamed into place).
    final_dir: Path
    #: Same series as the Prometheus gauges, one JSON object per line.
    metrics_file: Path
    #: Downloads (s3://, hub) and precomputed artifacts.
    cache_dir: Path
    #: The manifest file itself, when there is one.
    manifest: Path | None = None

    @classmethod
    def under(cls, output_dir: Path, base_dir: Path, manifest: Path | None = None) -> "Paths":
        output_dir = Path(output_dir)
        return cls(base_dir=Path(base_dir), output_dir=output_dir, checkpoint_dir=output_dir / "checkpoints",
                   final_dir=output_dir / "final", metrics_file=output_dir / "metrics.jsonl",
                   cache_dir=output_dir / "cache", manifest=manifest)


@dataclass(frozen=True)
class DeviceChoice:
    """Device and precision decided once from spec.model/spec.hyperparameters and the hardware present."""

    device: str                     #: "cuda" or "cpu"
    dtype: str                      #: dtype the weights are loaded in: "float32" | "bfloat16" | "float16"
    bf16: bool                      #: TrainingArguments.bf16 (mixed precision)
    fp16: bool                      #: TrainingArguments.fp16
    attn_implementation: str | None  #: passed to from_pretrained; None lets transformers choose
    quantized: bool = False         #: base loaded in 4/8-bit (bitsandbytes); see ModelProvider.quantization_config

    @property
    def torch_dtype(self) -> "torch.dtype":
        import torch
        return getattr(torch, self.dtype)


class ModelProvider(Protocol):
    """Loads models as spec.model asks (implemented by `align_trainer.models.Models`)."""

    #: The resolved local directory of the base model, or "builtin://tiny" style name for builtins.
    base_name: str

    def tokenizer(self) -> "PreTrainedTokenizerBase":
        """The base model's tokenizer (pad token and a ChatML template filled in when missing)."""

    def base(self, auto_class: Any = None, **extra: Any) -> "PreTrainedModel":
        """A fresh base model (AutoModelForCausalLM unless `auto_class`) on the chosen device/dtype, 4-bit when
        the spec asks, every weight frozen."""

    def policy(self) -> "PeftModel":
        """Base + trainable "default" LoRA adapter (spec.model.adapter; initialised from adapter.init when set).
        With reference.kind == "adapter" a frozen "ref" adapter is loaded too."""

    def bind_reference(self, model: Any) -> None:
        """Call after a TRL trainer has wrapped the policy: TRL adds a "ref" copy of a pre-loaded adapter on its
        own; this makes "ref" exactly what spec.model.reference says (removed for kind=base, the reference
        adapter's weights for kind=adapter)."""

    def lora_config(self, task_type: str = "CAUSAL_LM") -> "LoraConfig":
        """The policy LoraConfig from spec.model.adapter (for trainers that take `peft_config`)."""

    def sequence_classifier(self, num_labels: int = 1, *, from_init: bool = True) -> "PeftModel":
        """Base as AutoModelForSequenceClassification + trainable LoRA (score head trainable): reward models.
        from_init=False: a fresh LoRA even with spec.model.adapter.init (that adapter is the policy's, as in
        rlaif's auxiliary reward model; the reward algorithm continues its own adapter)."""

    def resolve(self, uri: str) -> str:
        """Local directory/file for a model/adapter URI (builtin, file://, s3://, pvc://, job://); hub ids are
        returned unchanged for from_pretrained."""


class MetricsSink(Protocol):
    """Prometheus gauges + metrics.jsonl (implemented by `align_trainer.metrics.Metrics`)."""

    def log(self, values: Mapping[str, float], *, step: int, epoch: float | None = None) -> None:
        """Export one set of scalars (TRL names such as "loss", "rewards/margins"); raises Diverged when the loss
        or grad norm is NaN/inf. Eval metrics keep their "eval_" prefix."""

    def progress(self, *, step: int, total_steps: int | None, epoch: float | None = None) -> None:
        """Update the step/total_steps/epoch gauges (the operator's progress)."""

    def checkpoints(self, records: list[dict[str, Any]]) -> None:
        """Export the kept checkpoints (align_trainer.checkpoint_index) for status.checkpoints."""


@dataclass
class TrainResult:
    """What an algorithm returns; the entry point prints it as the end summary."""

    steps: int                                           #: optimizer steps done in total (including resumed ones)
    total_steps: int | None                              #: steps planned
    metrics: dict[str, float] = field(default_factory=dict)       #: last logged train metrics
    eval_metrics: dict[str, float] = field(default_factory=dict)  #: last eval metrics ("eval_" prefix)
    adapter_dir: Path | None = None                      #: local final adapter (PEFT safetensors + README.md)
    adapter_uri: str | None = None                       #: where it was uploaded (spec.output.uri), if anywhere
    merged_dir: Path | None = None                       #: merged model, when spec.output.merge
    merged_uri: str | None = None
    checkpoints: list[Path] = field(default_factory=list)  #: checkpoints left on disk
    checkpoint_index: list[dict[str, Any]] = field(default_factory=list)  #: their records (checkpoint_index.py)
    resumed_from: Path | None = None                     #: checkpoint this run resumed from
    extra: dict[str, Any] = field(default_factory=dict)  #: algorithm-specific outputs (e.g. TPO rounds)


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
    #: Extra state for algorithm modules (e.g. reference log-prob cache); not used by the plumbing.
    scratch: dict[str, Any] = field(default_factory=dict)

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
