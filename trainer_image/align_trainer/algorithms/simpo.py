"""SimPO (Meng et al. 2024): length-normalised, reference-free, with a target margin gamma.

    L = -E[ log sigma( beta/|y_w| * log pi(y_w|x) - beta/|y_l| * log pi(y_l|x) - gamma ) ]

Implemented as TRL's CPOTrainer with loss_type "simpo" (average log-probs, margin gamma = `simpoGamma`);
`cpoAlpha` > 0 adds CPO's NLL term (CPO-SimPO); set it to 0 for pure SimPO (the spec's default is 1).
"""

from __future__ import annotations

from typing import Any

from ..runtime import DataKind, TrainContext, TrainResult
from .cpo import train_cpo

DATA = DataKind.PREFERENCE


def loss_settings(hp: Any) -> dict[str, Any]:
    """CPOConfig fields of SimPO from the spec (pure; tests/unit/test_loss_knob_directions.py)."""
    return dict(beta=hp.beta, loss_type="simpo", simpo_gamma=hp.simpo_gamma, cpo_alpha=hp.cpo_alpha)


def run(ctx: TrainContext) -> TrainResult:
    return train_cpo(ctx, **loss_settings(ctx.hp))
