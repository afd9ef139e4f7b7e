"""DPO (Rafailov et al. 2023) with TRL's loss variants, on a LoRA policy against a frozen reference.

    L_DPO = -E[ log sigma( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] ) ]

`hyperparameters.lossType` selects TRL's variants (ipo, hinge, robust, ...); `rpoAlpha` adds RPO's NLL
term on the chosen answer (Pang et al. 2024): L = L_DPO + alpha * NLL(y_w).
"""

from __future__ import annotations

from typing import Any

from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PREFERENCE


def loss_settings(hp: Any) -> dict[str, Any]:
    """DPOConfig loss fields from the spec (pure; unit-tested)."""
    loss_types = [hp.loss_type or "sigmoid"]
    weights = None
    if hp.rpo_alpha:
        loss_types.append("sft")  # TRL's "sft" term is the NLL of the chosen completion
        weights = [1.0, float(hp.rpo_alpha)]
    return dict(beta=hp.beta, loss_type=loss_types, loss_weights=weights, label_smoothing=hp.label_smoothing)


def run(ctx: TrainContext) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    args = ctx.trainer_args(DPOConfig, **loss_settings(ctx.hp))
    trainer = DPOTrainer(model=ctx.models.policy(), args=args, train_dataset=ctx.train_dataset,
                         eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    ctx.models.bind_reference(trainer.model)
    return ctx.train(trainer)
