"""The model card (README.md) written next to the final adapter: what was trained, on what, how, and
with which result, so an adapter found on a bucket explains itself."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runtime import TrainContext


def _table(values: dict[str, float]) -> str:
    if not values:
        return "_none logged_\n"
    rows = "\n".join(f"| {k} | {v:.6g} |" for k, v in sorted(values.items()))
    return "| metric | value |\n|---|---|\n" + rows + "\n"


def _gguf_source(ctx: "TrainContext") -> list[str]:
    """The GGUF file the base was converted from (file name, digest, what it held), when it was one."""
    from .builtin import PACKAGED
    from .gguf_models import is_gguf, source_of
    source = source_of(ctx.models.base_name)
    if source is None:
        return []
    # the conversion is shared by every copy of these bytes: name this job's file, not the first converter's
    base = ctx.spec.model.base
    packaged = PACKAGED.get(base.removeprefix("builtin://"))
    name = base.rsplit("/", 1)[-1] if is_gguf(base) else packaged.file if packaged else source["file"]
    types = ", ".join(f"{k} x{v}" for k, v in source["tensorTypes"].items())
    return [f"- GGUF source: `{name}` (sha256 `{source['sha256']}`; {source['architecture']}, "
            f"tensors {types}), dequantized to {source['dtype']}"]


def model_card(ctx: "TrainContext", *, step: int, metrics: dict[str, float], eval_metrics: dict[str, float],
               promoted_from: str | None = None) -> str:
    """`promoted_from`: the checkpoint this adapter is (spec.promote), named with its step."""
    spec = ctx.spec
    resolved: dict[str, Any] = ctx.job.to_dict(defaults=True)["spec"]
    data = {k: v for k, v in resolved["data"].items()}
    front = {"library_name": "peft", "base_model": spec.model.base, "tags": ["align-operator", spec.algorithm.value]}
    lines = [
        "---",
        *(f"{k}: {json.dumps(v)}" for k, v in front.items()),
        "---",
        f"# {ctx.name}{'-' + spec.suffix if spec.suffix else ''}",
        "",
        f"A LoRA policy adapter trained with **{spec.algorithm.value}** by align-operator "
        f"(AlignmentJob `{ctx.name}`) for {step} optimizer steps.",
        *([f"", f"Promoted checkpoint: step {step} (`{promoted_from}`), published as the final adapter by "
           f"spec.promote.step={step}."] if promoted_from else []),
        "",
        f"- Base model: `{spec.model.base}`" + (f" (revision `{spec.model.revision}`)" if spec.model.revision else ""),
        *_gguf_source(ctx),
        f"- Reference: {spec.model.reference.kind}" +
        (f" (`{spec.model.reference.adapter}`)" if spec.model.reference.adapter else ""),
        f"- Adapter: r={spec.model.adapter.r}, alpha={spec.model.adapter.alpha}, "
        f"targets={','.join(spec.model.adapter.target_modules)}" +
        (f", initialised from `{spec.model.adapter.init}`" if spec.model.adapter.init else ""),
        f"- Quantization: {spec.model.quantization.bits}-bit" if spec.model.quantization else "- Quantization: none",
        "",
        "## Data",
        "```json",
        json.dumps(data, indent=2),
        "```",
        "",
        "## Hyperparameters",
        "```json",
        json.dumps(resolved["hyperparameters"], indent=2),
        "```",
        "",
        "## Training metrics at step " + str(step) if promoted_from else "## Final training metrics",
        _table(metrics),
        "## Evaluation metrics at step " + str(step) if promoted_from else "## Final evaluation metrics",
        _table(eval_metrics),
        "## Use",
        "```python",
        "from peft import AutoPeftModelForCausalLM",
        "model = AutoPeftModelForCausalLM.from_pretrained(\"<this directory>\")",
        "```",
        "",
    ]
    return "\n".join(lines)
