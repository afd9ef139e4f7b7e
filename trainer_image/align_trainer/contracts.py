"""The leaf types the trainer's layers share: what an algorithm trains on (DataKind), where things are (Paths),
the device (DeviceChoice), the model and metrics interfaces (ModelProvider, MetricsSink) and what a run returns
(TrainResult). They import nothing of align_trainer, so every layer (data, models, checkpoints, runtime,
algorithms) can use them without pointing up. runtime.py holds TrainContext, which joins them for algorithms."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

if TYPE_CHECKING:  # heavy imports only for type checkers: importing this must stay cheap
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


#: The column that carries a prompt row's nested fields as written (JSON): a table gives nested fields one schema,
#: so graders read them back from here (data.keep_items_as_written, graders.rewards.with_messages).
ITEM_AS_WRITTEN = "__item__"


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

    def warn(self, reason: str, message: str) -> None:
        """Report a warning the run goes on with (the operator: an event and a condition)."""

    def reported_warnings(self) -> list[dict[str, str]]:
        """The warnings reported so far ({reason, message}): the success termination message carries them."""


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
