"""ORPO (Hong et al. 2024): SFT loss plus an odds-ratio preference term, no reference model.

    odds(y|x) = P(y|x) / (1 - P(y|x))
    L = NLL(y_w | x) - lambda * E[ log sigma( log odds(y_w|x) - log odds(y_l|x) ) ]

`beta` is lambda (TRL's ORPOConfig.beta).
"""

from __future__ import annotations

from typing import Any

from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PREFERENCE


def loss_settings(hp: Any) -> dict[str, Any]:
    """ORPOConfig loss fields from the spec: beta is ORPO's lambda (pure; tests/unit/test_loss_knob_directions.py)."""
    return dict(beta=hp.beta)


def run(ctx: TrainContext) -> TrainResult:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = ctx.trainer_args(ORPOConfig, **loss_settings(ctx.hp))
    trainer = ORPOTrainer(model=ctx.models.policy(), args=args, train_dataset=ctx.train_dataset,
                          eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    return ctx.train(trainer)
