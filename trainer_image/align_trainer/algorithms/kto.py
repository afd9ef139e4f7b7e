"""KTO (Ethayarajh et al. 2024): learns from unpaired desirable/undesirable examples.

    r(x, y) = log pi(y|x) - log pi_ref(y|x),   z_0 = max(0, KL(pi || pi_ref)) estimated on mismatched pairs
    L = E_desirable[ w_D * (1 - sigma(beta * (r - z_0))) ] + E_undesirable[ w_U * (1 - sigma(beta * (z_0 - r))) ]

Preference pairs are split into one desirable and one undesirable row (formats.py).
"""

from __future__ import annotations

from typing import Any

from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.UNPAIRED


def loss_settings(hp: Any) -> dict[str, Any]:
    """KTOConfig loss fields from the spec (pure; tests/unit/test_loss_knob_directions.py)."""
    return dict(beta=hp.beta, loss_type=hp.loss_type or "kto",
                desirable_weight=hp.desirable_weight, undesirable_weight=hp.undesirable_weight)


def run(ctx: TrainContext) -> TrainResult:
    from trl import KTOConfig, KTOTrainer

    args = ctx.trainer_args(KTOConfig, **loss_settings(ctx.hp))
    trainer = KTOTrainer(model=ctx.models.policy(), args=args, train_dataset=ctx.train_dataset,
                         eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    ctx.models.bind_reference(trainer.model)
    return ctx.train(trainer)
