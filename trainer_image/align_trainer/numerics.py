"""Numerical health of the forward pass, watched without a host sync per step.

Pre-norm transformers (Llama, Qwen, Mistral, Gemma, ...) hide one way of diverging. When the residual stream
grows past sqrt(float32 max) ~ 1.8e19, the mean square that RMSNorm computes (in float32) overflows to inf,
rsqrt(inf) = 0, and the normalised state of that position becomes exactly 0: its logits are 0, the loss sits at
ln(vocabulary size), the gradient is exactly 0, and no NaN ever reaches the loss or the grad norm. Without a
look inside the model such a run "succeeds" with a dead adapter. With AdamW every weight moves by up to the
learning rate per step, so an absurd learning rate gets there in a few steps (builtin://tiny, learningRate 100:
step 3; see docs/operations.md).

`ResidualWatch` hooks the input of a model's final norm (the residual stream after the last block: an overflow
anywhere upstream reaches it through the residual connections) and keeps the peak per-position mean square on
the device; `read()` turns it into the largest per-position RMS since the last read (inf after an overflow,
NaN after a NaN). The metrics sink reads it at each log and treats a non-finite value as divergence.
"""

from __future__ import annotations

import logging
import math
import weakref
from typing import Any

log = logging.getLogger(__name__)

#: The metric: largest per-position RMS of the residual stream entering the final norm since the last log.
RESIDUAL_KEY = "activations/residual_rms_max"
#: Attribute names of the final norm on a backbone (Llama family, Phi, GPT-2/Falcon, OPT).
FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_layer_norm")


def final_norm(model: Any) -> Any:
    """The backbone's final norm module of a (PEFT-wrapped, DDP-wrapped) transformers model, or None."""
    while hasattr(model, "module"):  # DDP
        model = model.module
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    backbone = getattr(model, "base_model", model)  # transformers: the body under base_model_prefix
    for holder in (backbone, getattr(backbone, "decoder", None)):
        for name in FINAL_NORM_NAMES:
            module = getattr(holder, name, None) if holder is not None else None
            if module is not None and callable(module):
                return module
    return None


class ResidualWatch:
    """Forward hooks on the final norm of every attached model; `read()` returns and resets the peak RMS."""

    def __init__(self) -> None:
        self._peak: Any = None  # a 0-d tensor on the model's device: no host sync in the forward pass
        self._attached: weakref.WeakSet[Any] = weakref.WeakSet()  # not ids: a freed module's id is reused

    def attach(self, model: Any) -> bool:
        norm = final_norm(model)
        if norm is None:
            log.warning("%s has no final norm that align_trainer knows: activation overflow is not watched",
                        type(model).__name__)
            return False
        if norm not in self._attached:
            norm.register_forward_hook(self._hook, with_kwargs=True)
            self._attached.add(norm)
        return True

    def _hook(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        import torch
        hidden = args[0] if args else kwargs.get("hidden_states")
        if not isinstance(hidden, torch.Tensor):
            return
        with torch.no_grad():  # the same float32 mean square the norm computes (whatever the weights' dtype)
            peak = hidden.detach().float().pow(2).mean(-1).amax()
            # torch.maximum keeps a NaN (max() would drop it)
            self._peak = peak if self._peak is None else torch.maximum(self._peak, peak.to(self._peak.device))

    def read(self) -> float | None:
        """The largest per-position RMS since the last read (None when no forward pass ran)."""
        if self._peak is None:
            return None
        peak, self._peak = float(self._peak), None
        return math.sqrt(peak) if peak >= 0 else math.nan  # inf -> inf, NaN -> NaN
