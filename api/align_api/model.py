"""spec.model: base model, quantization, the policy adapter and the reference."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import ArtifactURI, ModelURI, SpecModel


class Quantization(SpecModel):
    """bitsandbytes quantization of the frozen base (QLoRA). Needs CUDA."""

    bits: Literal[4, 8] = Field(default=4, description="4 = NF4 (QLoRA), 8 = LLM.int8().")
    quant_type: Literal["nf4", "fp4"] = Field(default="nf4", description="4-bit data type.")
    double_quant: bool = Field(default=True, description="Quantize the quantization constants too (saves ~0.4 bits/param).")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(default="bfloat16", description="Matmul dtype for 4-bit layers.")


class Adapter(SpecModel):
    """The trainable policy: a LoRA adapter on the shared base model."""

    r: int = Field(default=16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(default=32, ge=1, le=4096, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"], max_length=64,
        description="Modules to adapt: [all-linear] or module names (q_proj, v_proj, ...).")
    init: ArtifactURI | None = Field(
        default=None, description="Initialise the policy from this adapter (e.g. an SFT adapter, job://<sft-job>, or "
                                  "job://<sft-job>@<step>: the checkpoint that job kept at that step).")
    use_rslora: bool = Field(default=False, description="Rank-stabilised LoRA scaling (alpha / sqrt(r)).")

    @model_validator(mode="after")
    def _targets(self) -> "Adapter":
        if not self.target_modules:
            raise ValueError("[targetModules] must be [all-linear] or a non-empty list of module names")
        if "all-linear" in self.target_modules and len(self.target_modules) > 1:
            raise ValueError("[targetModules] 'all-linear' cannot be combined with module names")
        return self


class Reference(SpecModel):
    """The frozen reference policy for KL-regularised algorithms."""

    kind: Literal["base", "adapter", "precomputed"] = Field(
        default="base",
        description="base: the base model with adapters disabled (no extra memory); adapter: a frozen adapter "
                    "on the same base; precomputed: reference log-probs computed once before training.")
    adapter: ArtifactURI | None = Field(default=None, description="URI of the frozen reference adapter (kind=adapter).")

    @model_validator(mode="after")
    def _adapter_uri(self) -> "Reference":
        if self.kind == "adapter" and not self.adapter:
            raise ValueError("[adapter] reference.kind 'adapter' needs reference.adapter (the adapter's URI)")
        if self.kind != "adapter" and self.adapter:
            raise ValueError(f"[adapter] reference.adapter is only used with kind 'adapter', not {self.kind!r}")
        return self


class ModelSpec(SpecModel):
    """Which model to align and how."""

    base: ModelURI = Field(description="Base model: hub id, builtin://tiny, file://, s3://bucket/prefix or pvc://claim/path.")
    revision: str | None = Field(default=None, max_length=128, description="Hub revision (branch, tag or commit).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weights dtype; auto = bfloat16 on GPUs that support it, float32 on CPU.")
    attention: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        default="auto", description="Attention implementation; flash_attention_2 needs CUDA and flash-attn.")
    quantization: Quantization | None = Field(default=None, description="Quantize the frozen base with bitsandbytes (CUDA only).")
    adapter: Adapter = Field(default_factory=Adapter, description="The trainable policy LoRA adapter.")
    reference: Reference = Field(default_factory=Reference, description="The frozen reference policy.")
    trust_remote_code: bool = Field(default=False, description="Allow custom modelling code from the hub.")
