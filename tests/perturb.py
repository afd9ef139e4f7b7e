"""Last-bit perturbation of the base weights, to measure how far a seeded training test's numbers move on another
CPU (Intel and AMD kernels differ in the last bits; sampling and argmax turn that into another trajectory).

`ALIGN_TEST_PERTURB=k pytest ...` (k = 1, 2, ...) runs a test with every base model the trainer loads in-process
multiplied by (1 + 1e-6 * N(0, 1)) from seed k: a few float32 ulps. A threshold that fails for some k was taken
from one trajectory; docs/testing.md ("Seeded thresholds") lists the spreads measured this way.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

#: relative size of the noise: 1e-6 is about 8 float32 ulps (eps 1.19e-7)
SCALE = 1e-6


@contextlib.contextmanager
def perturbed_base_weights(k: int) -> Iterator[None]:
    """Within the block, align_trainer's Models.base returns weights with noise from seed k (k = 0: unchanged)."""
    if not k:
        yield
        return
    from align_trainer import models
    loaded = models.Models.base

    def perturbed(self: Any, *args: Any, **kwargs: Any) -> Any:
        import torch
        model = loaded(self, *args, **kwargs)
        gen = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for p in model.parameters():
                if p.is_floating_point():
                    p.mul_(1 + SCALE * torch.randn(p.shape, generator=gen).to(p.device, p.dtype))
        return model

    models.Models.base = perturbed  # type: ignore[method-assign]
    try:
        yield
    finally:
        models.Models.base = loaded  # type: ignore[method-assign]
