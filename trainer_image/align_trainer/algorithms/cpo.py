"""CPO (Xu et al. 2024): reference-free preference loss plus a behaviour-cloning NLL term on the chosen.

    L = -E[ log sigma( beta * (log pi(y_w|x) - log pi(y_l|x)) ) ] + alpha * NLL(y_w | x)

`lossType` hinge / ipo swap the first term as in TRL's CPOTrainer; `cpoAlpha` is alpha.
"""

from __future__ import annotations

from typing import Any

from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PREFERENCE


def train_cpo(ctx: TrainContext, **loss: Any) -> TrainResult:
    """Shared by cpo and simpo (SimPO is CPOTrainer with loss_type="simpo")."""
    import warnings
    with warnings.catch_warnings():  # "experimental" import warning: the module path is pinned with TRL
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOConfig, CPOTrainer

    args = ctx.trainer_args(CPOConfig, **loss)
    trainer = CPOTrainer(model=ctx.models.policy(), args=args, train_dataset=ctx.train_dataset,
                         eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    return ctx.train(trainer)


def loss_settings(hp: Any) -> dict[str, Any]:
    """CPOConfig loss fields from the spec (pure; tests/unit/test_loss_knob_directions.py)."""
    return dict(beta=hp.beta, loss_type=hp.loss_type or "sigmoid", cpo_alpha=hp.cpo_alpha,
                label_smoothing=hp.label_smoothing)


def run(ctx: TrainContext) -> TrainResult:
    return train_cpo(ctx, **loss_settings(ctx.hp))
