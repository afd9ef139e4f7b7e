"""Reward model (Bradley-Terry, Ouyang et al. 2022): a sequence-classification head + LoRA on the base.

    L = -E[ log sigma( r(x, y_w) - r(x, y_l) ) ]  (+ c * E[ (r(x, y_w) + r(x, y_l))^2 ] with
    `centerRewardsCoefficient` c, Eisenstein et al. 2023, keeping rewards centred at 0)

The saved adapter carries the trained score head (PEFT modules_to_save), so `reward_model` graders load it
with the base model.
"""

from __future__ import annotations

from typing import Any

from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PREFERENCE


def loss_settings(hp: Any) -> dict[str, Any]:
    """RewardConfig loss fields from the spec (pure; tests/unit/test_loss_knob_directions.py)."""
    return dict(center_rewards_coefficient=hp.center_rewards_coefficient)


def run(ctx: TrainContext) -> TrainResult:
    from trl import RewardConfig, RewardTrainer

    args = ctx.trainer_args(RewardConfig, **loss_settings(ctx.hp))
    trainer = RewardTrainer(model=ctx.models.sequence_classifier(num_labels=1), args=args,
                            train_dataset=ctx.train_dataset, eval_dataset=ctx.eval_dataset,
                            processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    return ctx.train(trainer)
