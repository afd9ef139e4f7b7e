"""DPO (Rafailov et al. 2023) with TRL's loss variants, on a LoRA policy against a frozen reference.

    L_DPO = -E[ log sigma( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] ) ]

`hyperparameters.lossType` selects TRL's variants (ipo, hinge, robust, ...); `rpoAlpha` adds an NLL term on
the chosen answer (Pang et al. 2024; TRL calls this "RPO"): L = L_DPO + alpha * NLL(y_w). That is DPO + NLL, not
Reward-aware Preference Optimization (Nemotron-4), which is `algorithm: rpo`.

With `rounds`, the pairs are the policy's own best-vs-worst samples under spec.grader, round after round
(align_trainer.preference_rounds); the dataset then only provides the prompts.
"""

from __future__ import annotations

from typing import Any

from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PREFERENCE


def data_kind(spec: Any) -> DataKind:
    """Offline: preference pairs. Iterative rounds: the prompts only (any dataset with prompts)."""
    return DataKind.PROMPT_ONLY if spec.hyperparameters.rounds else DATA


def loss_settings(hp: Any) -> dict[str, Any]:
    """DPOConfig loss fields from the spec (pure; unit-tested)."""
    loss_types = [hp.loss_type or "sigmoid"]
    weights = None
    if hp.rpo_alpha:
        loss_types.append("sft")  # TRL's "sft" term is the NLL of the chosen completion
        weights = [1.0, float(hp.rpo_alpha)]
    return dict(beta=hp.beta, loss_type=loss_types, loss_weights=weights, label_smoothing=hp.label_smoothing)


def round_trainer(ctx: TrainContext, model: Any, pairs: Any, round_no: int) -> Any:
    """Iterative dpo: a DPO trainer on the round's best-vs-worst pairs (their reward_gap column is unused)."""
    from trl import DPOConfig, DPOTrainer

    from ..preference_rounds import round_args
    args = ctx.trainer_args(DPOConfig, **loss_settings(ctx.hp), **round_args(ctx, round_no))
    return DPOTrainer(model=model, args=args, train_dataset=pairs, processing_class=ctx.tokenizer)


def run(ctx: TrainContext) -> TrainResult:
    if ctx.hp.rounds:  # sampling, grading and rounds: imported only by the jobs that run them
        from .. import preference_rounds
        return preference_rounds.run(ctx, "dpo", round_trainer)
    from trl import DPOConfig, DPOTrainer

    args = ctx.trainer_args(DPOConfig, **loss_settings(ctx.hp))
    trainer = DPOTrainer(model=ctx.models.policy(), args=args, train_dataset=ctx.train_dataset,
                         eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    ctx.models.bind_reference(trainer.model)
    return ctx.train(trainer)
