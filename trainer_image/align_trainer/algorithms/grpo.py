"""GRPO (Shao et al. 2024, DeepSeekMath) with the job's grader as the reward function (TRL GRPOTrainer).

For each prompt q, G completions o_1..o_G are sampled; the advantage of o_i is its group-normalised reward
    A_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G)          (scaleRewards: group; batch: batch std; none: no std)
and the per-token loss is the clipped surrogate with a KL penalty to the reference (adapters off):
    l_it = -[ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta KL_t(pi || pi_ref) ]
with rho_it = pi(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t), eps = clipRange, beta = klCoef.
`lossType` chooses how l_it is aggregated (TRL's loss_type; docs/algorithms.md has every formula):
    grpo     1/G sum_i 1/|o_i| sum_t l_it            (DeepSeekMath: per-sequence mean, length-biased)
    dr_grpo  1/(G L) sum_i sum_t l_it                 (Dr. GRPO: L = maxCompletionLength, a constant)
    dapo     sum_i sum_t l_it / sum_i |o_i|           (DAPO: tokens of the whole accumulated batch; the default)
    bnpo     the same over the local micro-batch
    cispo    -clip(rho_it, ., 1+eps)^sg A_i log pi_it, dapo-normalised (MiniMax-M1)
    sapo     a soft, temperature-controlled gate instead of the hard clip (SAPO)
Dropout is off in the policy (disable_dropout): old log-probs then come from the network that sampled.

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
                num_iterations=hp.num_iterations, log_completions=False, disable_dropout=True)


def grpo_settings(hp: Any) -> dict[str, Any]:
    """GRPOConfig fields from the spec (grpo and reft's GRPO stage)."""
    return dict(scale_rewards=hp.scale_rewards, loss_type=hp.loss_type or "dapo", **generation_settings(hp))


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
    args = ctx.trainer_args(GRPOConfig, **grpo_settings(ctx.hp))
    return train_with(ctx, GRPOTrainer, args, grader_reward(ctx, judge=judge))
