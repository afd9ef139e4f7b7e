"""GRPO (Shao et al. 2024, DeepSeekMath) with the job's grader as the reward function (TRL GRPOTrainer).

For each prompt q, G completions o_1..o_G are sampled; the advantage of o_i is its group-normalised reward
    A_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G)          (scaleRewards: group; batch: batch std; none: no std)
and the policy maximises the clipped surrogate with a KL penalty to the reference (adapters off):
    J = E[ 1/G sum_i 1/|o_i| sum_t min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta KL(pi || pi_ref) ]
with rho_it = pi(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t), eps = clipRange, beta = klCoef.

Metrics: TRL's `reward`, `reward_std`, `kl`, `entropy`, `clip_ratio/*`, `rewards/<grader>/mean`, plus
`rewards/<sub-grader>/mean` and `graders/errors` / `graders/error_rate` from the grader.
"""

from __future__ import annotations

from typing import Any

from ..graders.rewards import GraderReward, grader_reward
from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PROMPT_ONLY


def generation_settings(hp: Any) -> dict[str, Any]:
    """Fields GRPOConfig and RLOOConfig share, from the spec (pure)."""
    return dict(num_generations=hp.num_generations, max_completion_length=hp.max_completion_length,
                temperature=hp.temperature, top_p=hp.top_p, beta=hp.kl_coef, epsilon=hp.clip_range,
                num_iterations=hp.num_iterations, log_completions=False)


def check_batch(hp: Any) -> None:
    """TRL counts completions in a batch: it must hold whole groups of numGenerations."""
    from ..errors import ConfigError
    total = hp.batch_size * hp.gradient_accumulation_steps
    if total % hp.num_generations:
        raise ConfigError(f"hyperparameters.batchSize x gradientAccumulationSteps ({total}) must be a multiple of "
                          f"numGenerations ({hp.num_generations}): each step trains on whole groups of completions")


def train_with(ctx: TrainContext, trainer_cls: Any, args: Any, reward: GraderReward) -> TrainResult:
    trainer = trainer_cls(model=ctx.models.policy(), reward_funcs=[reward], args=args,
                          train_dataset=ctx.train_dataset, eval_dataset=ctx.eval_dataset,
                          processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    ctx.models.bind_reference(trainer.model)
    try:
        return ctx.train(trainer)
    finally:
        reward.grader.close()


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    from trl import GRPOConfig, GRPOTrainer

    check_batch(ctx.hp)
    args = ctx.trainer_args(GRPOConfig, scale_rewards=ctx.hp.scale_rewards, **generation_settings(ctx.hp))
    return train_with(ctx, GRPOTrainer, args, grader_reward(ctx, judge=judge))
