"""RLOO (Ahmadian et al. 2024, "Back to Basics") with the job's grader as the reward (TRL RLOOTrainer).

Each prompt gets k completions; the baseline of completion i is the mean reward of the other k-1:
    A_i = r_i - 1/(k-1) sum_{j != i} r_j
and the policy gradient uses the clipped importance ratio as in PPO/GRPO, with the KL to the reference
(adapters off) weighted by beta = klCoef. k = numGenerations.

Metrics: TRL's `reward`, `reward_std`, `kl`, `entropy`, `rewards/<grader>/mean`, plus the grader's
`rewards/<sub-grader>/mean` and `graders/errors` / `graders/error_rate`.
"""

from __future__ import annotations

from typing import Any

from ..graders.rewards import grader_reward
from ..runtime import DataKind, TrainContext, TrainResult
from .grpo import check_batch, generation_settings, train_with

DATA = DataKind.PROMPT_ONLY


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    from trl import RLOOConfig, RLOOTrainer

    check_batch(ctx.hp)
    args = ctx.trainer_args(RLOOConfig, **generation_settings(ctx.hp))
    return train_with(ctx, RLOOTrainer, args, grader_reward(ctx, judge=judge))
