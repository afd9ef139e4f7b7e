"""Models as spec.model asks: base (builtin, hub, file, s3, pvc), policy LoRA adapter, reference, 4-bit.

One base model is shared: the policy is a trainable LoRA adapter named "default" on it, and the reference
is the same base with adapters disabled, or a frozen adapter named "ref" (TRL's convention, see
runtime.py), or precomputed log-probs. Only `Models.base()` touches the weights files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from align_api.constants import ENV_HF_TOKEN
from align_api.hyperparameters import Hyperparameters
from align_api.model import ModelSpec, Quantization

from . import builtin, storage
from .errors import ConfigError, UpstreamError
from .contracts import DeviceChoice

if TYPE_CHECKING:
    from peft import LoraConfig, PeftModel
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_ADAPTER, REFERENCE_ADAPTER = "default", "ref"


def choose_device(model: ModelSpec, hp: Hyperparameters, *, gpus: int, cuda: bool | None = None,
                  bf16_supported: bool | None = None, flash_attn: bool | None = None) -> DeviceChoice:
    """Device, weights dtype, mixed precision and attention from the spec and the hardware (pure given the
    hardware facts, which tests pass explicitly)."""
    if cuda is None:
        import torch
        cuda = torch.cuda.is_available()
    if bf16_supported is None:
        import torch
        bf16_supported = bool(cuda and torch.cuda.is_bf16_supported())
    on_gpu = bool(cuda and gpus > 0)
    if model.quantization is not None and not on_gpu:
        raise ConfigError("spec.model.quantization needs CUDA (bitsandbytes 4/8-bit kernels); no GPU is visible "
                          "to the trainer. Remove quantization or run with resources.gpusPerNode >= 1")
    precision = hp.precision
    if precision == "auto":
        precision = "bf16" if on_gpu and bf16_supported else ("fp16" if on_gpu else "fp32")
    if precision in ("bf16", "fp16") and not on_gpu:
        raise ConfigError(f"hyperparameters.precision {precision!r} needs a GPU; use fp32 or auto on CPU")
    if precision == "bf16" and not bf16_supported:
        raise ConfigError("hyperparameters.precision 'bf16' is not supported by this GPU; use fp16 or auto")
    dtype = model.dtype
    if dtype == "auto":
        # bf16 weights halve the memory of the frozen base; fp16 weights would make fp16 AMP unstable
        dtype = "bfloat16" if precision == "bf16" else "float32"
    attention: str | None = None if model.attention == "auto" else model.attention
    if attention == "flash_attention_2":
        if flash_attn is None:
            import importlib.util
            flash_attn = importlib.util.find_spec("flash_attn") is not None
        if not on_gpu or not flash_attn:
            raise ConfigError("spec.model.attention flash_attention_2 needs CUDA and the flash-attn package; "
                              "use sdpa or auto")
        if dtype == "float32":
            raise ConfigError("flash_attention_2 needs bfloat16/float16 weights; set spec.model.dtype")
    return DeviceChoice(device="cuda" if on_gpu else "cpu", dtype=dtype, bf16=precision == "bf16",
                        fp16=precision == "fp16", attn_implementation=attention,
                        quantized=model.quantization is not None)


def quantization_config(q: Quantization | None, *, cuda: bool | None = None) -> "BitsAndBytesConfig | None":
    """bitsandbytes config for QLoRA (NF4, double quantisation, bf16 compute by default); CUDA only."""
    if q is None:
        return None
    if cuda is None:
        import torch
        cuda = torch.cuda.is_available()
    if not cuda:
        raise ConfigError("4/8-bit quantization (bitsandbytes) needs CUDA; no GPU is visible")
    import torch
    from transformers import BitsAndBytesConfig
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                              bnb_4bit_use_double_quant=q.double_quant,
                              bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
                              bnb_4bit_quant_storage=getattr(torch, q.compute_dtype))


def hf_token() -> str | None:
    """The Hugging Face token: only from the environment (the operator maps the Secret reference to it)."""
    return os.environ.get(ENV_HF_TOKEN) or None


class Models:
    """Implements contracts.ModelProvider for one job."""

    def __init__(self, spec: ModelSpec, device: DeviceChoice, *, base_dir: Path, cache_dir: Path) -> None:
        self.spec, self.device = spec, device
        self.base_dir, self.cache_dir = Path(base_dir), Path(cache_dir)
        self.base_name = self.resolve(spec.base)
        self._ref_dir: str | None = None
        self.end_of_turn: int | None = None  #: the chat template's end-of-turn token id, once tokenizer() ran
        #: called with every trainable model built here (the metrics sink watches its activations)
        self.on_trainable: list[Callable[[Any], None]] = []

    # --- locations ---------------------------------------------------------------------------------
    def resolve(self, uri: str) -> str:
        if uri.startswith("builtin://"):
            return str(builtin.materialize(uri[len("builtin://"):]))
        return storage.resolve(uri, base_dir=self.base_dir, cache_dir=self.cache_dir)

    def _from_pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(dtype=self.device.torch_dtype, token=hf_token(),
                                      trust_remote_code=self.spec.trust_remote_code)
        if self.spec.revision:
            kwargs["revision"] = self.spec.revision
        if self.device.attn_implementation:
            kwargs["attn_implementation"] = self.device.attn_implementation
        if self.device.quantized:
            kwargs["quantization_config"] = quantization_config(self.spec.quantization)
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        return kwargs

    # --- tokenizer and base --------------------------------------------------------------------------
    def tokenizer(self) -> "PreTrainedTokenizerBase":
        from transformers import AutoTokenizer
        try:
            tok = AutoTokenizer.from_pretrained(self.base_name, token=hf_token(), revision=self.spec.revision,
                                                trust_remote_code=self.spec.trust_remote_code)
        except OSError as exc:
            raise UpstreamError(f"cannot load the tokenizer of {self.spec.base}: {exc}") from None
        if tok.pad_token is None:  # many causal LMs ship without one; padding is masked anyway
            tok.pad_token = tok.eos_token
        if tok.chat_template is None:
            tok.chat_template = builtin.CHAT_TEMPLATE
        from .chat import end_of_turn_id
        self.end_of_turn = end_of_turn_id(tok)
        return tok

    def base(self, auto_class: Any = None, **extra: Any) -> "PreTrainedModel":
        from transformers import AutoModelForCausalLM
        cls = auto_class or AutoModelForCausalLM
        try:
            model = cls.from_pretrained(self.base_name, **self._from_pretrained_kwargs(), **extra)
        except OSError as exc:
            raise UpstreamError(f"cannot load base model {self.spec.base}: {exc}") from None
        if self.device.device == "cuda" and not self.device.quantized:
            model = model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")  # torchrun: this rank's GPU
        for p in model.parameters():
            p.requires_grad_(False)
        self._stop_at_end_of_turn(model)
        return model

    def _stop_at_end_of_turn(self, model: Any) -> None:
        """The template's end-of-turn token joins generation_config.eos_token_id, where TRL's samplers (GRPO,
        RLOO, online DPO) and model.generate look for stop tokens."""
        config = getattr(model, "generation_config", None)
        if self.end_of_turn is None or config is None:
            return
        declared = config.eos_token_id
        declared = [declared] if isinstance(declared, int) else list(declared or [])
        if self.end_of_turn not in declared:
            config.eos_token_id = declared + [self.end_of_turn] if declared else self.end_of_turn

    # --- adapters --------------------------------------------------------------------------------------
    def lora_config(self, task_type: str = "CAUSAL_LM") -> "LoraConfig":
        from peft import LoraConfig
        a = self.spec.adapter
        targets: Any = "all-linear" if a.target_modules == ["all-linear"] else list(a.target_modules)
        return LoraConfig(r=a.r, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=targets,
                          use_rslora=a.use_rslora, task_type=task_type, bias="none",
                          modules_to_save=["score"] if task_type == "SEQ_CLS" else None)

    def _wrap(self, base: Any, task_type: str, *, from_init: bool = True) -> "PeftModel":
        from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
        if self.device.quantized:
            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
        if self.spec.adapter.init and from_init:
            path = self.resolve(self.spec.adapter.init)
            try:
                model = PeftModel.from_pretrained(base, path, adapter_name=DEFAULT_ADAPTER, is_trainable=True)
            except (OSError, ValueError) as exc:
                raise UpstreamError(f"cannot load spec.model.adapter.init {self.spec.adapter.init}: {exc}") from None
            log.info("policy adapter initialised from %s", self.spec.adapter.init)
        else:
            model = get_peft_model(base, self.lora_config(task_type), adapter_name=DEFAULT_ADAPTER)
        for hook in self.on_trainable:
            hook(model)
        return model

    def policy(self) -> "PeftModel":
        return self._wrap(self.base(), "CAUSAL_LM")

    def sequence_classifier(self, num_labels: int = 1, *, from_init: bool = True) -> "PeftModel":
        from transformers import AutoModelForSequenceClassification
        base = self.base(AutoModelForSequenceClassification, num_labels=num_labels)
        if base.config.pad_token_id is None:
            base.config.pad_token_id = base.config.eos_token_id
        model = self._wrap(base, "SEQ_CLS", from_init=from_init)
        for name, p in model.named_parameters():  # the fresh score head must learn, not only LoRA
            if "score" in name and "modules_to_save" in name:
                p.requires_grad_(True)
        return model

    def bind_reference(self, model: Any) -> None:
        """Make the "ref" adapter match spec.model.reference (see contracts.ModelProvider)."""
        peft_model = _unwrap_peft(model)
        if peft_model is None:
            return
        kind = self.spec.reference.kind
        if REFERENCE_ADAPTER in peft_model.peft_config:
            peft_model.delete_adapter(REFERENCE_ADAPTER)
        if kind == "adapter":
            if self._ref_dir is None:
                self._ref_dir = self.resolve(self.spec.reference.adapter)  # type: ignore[arg-type]
            try:
                peft_model.load_adapter(self._ref_dir, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
            except (OSError, ValueError) as exc:
                raise UpstreamError(f"cannot load reference adapter {self.spec.reference.adapter}: {exc}") from None
            for name, p in peft_model.named_parameters():
                if f".{REFERENCE_ADAPTER}." in name:
                    p.requires_grad_(False)
        elif kind == "base" and self.spec.adapter.init:
            log.warning("reference.kind=base with adapter.init: the reference is the bare base model, not the "
                        "initial adapter; use reference.kind=adapter with the same URI for the latter")
        peft_model.set_adapter(DEFAULT_ADAPTER)


def _unwrap_peft(model: Any) -> "PeftModel | None":
    from peft import PeftModel
    while model is not None and not isinstance(model, PeftModel):
        model = getattr(model, "module", None)
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def portable_base_reference(adapter_dir: Path, base_uri: str) -> None:
    """Record the base as its URI in adapter_config.json when it is not a hub id: a local cache path
    (builtin, s3, pvc downloads) means nothing in another pod. `load_trained` resolves it back."""
    if storage.scheme_of(base_uri) in ("", "hf") and not base_uri.startswith(("/", ".", "~")):
        return
    config_file = Path(adapter_dir) / "adapter_config.json"
    if config_file.is_file():
        import json
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base_uri
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")


def load_trained(adapter_dir: Path | str, *, sequence_classification: bool = False, base_dir: Path | None = None,
                 cache_dir: Path | None = None, dtype: str = "float32") -> "PeftModel":
    """A trained adapter (this trainer's final/ output) on its base, for graders and evaluation elsewhere:
    the base URI in adapter_config.json is resolved like spec.model.base."""
    import json

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    adapter_dir = Path(adapter_dir)
    base_uri = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    if base_uri.startswith("builtin://"):
        base_path = str(builtin.materialize(base_uri[len("builtin://"):]))
    else:
        base_path = storage.resolve(base_uri, base_dir=base_dir or Path.cwd(),
                                    cache_dir=cache_dir or builtin.cache_root() / "downloads")
    cls = AutoModelForSequenceClassification if sequence_classification else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"num_labels": 1} if sequence_classification else {}
    base = cls.from_pretrained(base_path, dtype=getattr(torch, dtype), token=hf_token(), **kwargs)
    if sequence_classification and base.config.pad_token_id is None:
        base.config.pad_token_id = base.config.eos_token_id
    return PeftModel.from_pretrained(base, str(adapter_dir))
