"""RLAIF: RL from AI feedback (Bai et al. 2022 "Constitutional AI"; Lee et al. 2023 "RLAIF vs. RLHF").

The AI judge is spec.grader: a score_model or label_model (or a multi grader combining judges), served by an
OpenAI-compatible endpoint or loaded locally. The RL algorithm is our PPO (ppo.py). `hyperparameters.feedback`
chooses how the judge's opinion becomes the reward:

  direct      (Lee et al.'s "d-RLAIF"): the judge scores every sampled answer during PPO; r(x, y) = judge(x, y).
              Simplest and most faithful; costs one judge call per sample per step.
  preference  (Lee et al.'s distilled RLAIF, Bai et al.'s preference model): before RL, numGenerations answers
              per prompt are sampled from the initial policy and the judge scores each; the best is "chosen",
              the worst "rejected" (prompts whose answers all tie are dropped). A reward model (LoRA sequence classifier on the same base) is trained on these pairs
              with the Bradley-Terry loss  L = -log sigma(r(x, y_w) - r(x, y_l)),  then PPO uses it: judge calls
              happen only once, before training.

Metrics: PPO's (objective/kl, val/ratio, loss/value_avg, entropy, reward, ...), plus for `preference`:
`rlaif/pairs` (judge-labelled pairs kept), `rlaif/ties` (prompts dropped) and `rlaif/rm_accuracy` (reward model train accuracy).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from .. import distributed, online
from ..errors import ConfigError
from ..graders.rewards import GraderReward, grader_reward, row_items
from ..runtime import DataKind, TrainContext, TrainResult
from . import ppo

DATA = DataKind.PROMPT_ONLY
log = logging.getLogger(__name__)


def judge_pairs(ctx: TrainContext, reward: GraderReward) -> tuple[list[dict[str, Any]], int]:
    """numGenerations samples per prompt from the initial policy, judged; the best and the worst form a pair
    (prompts whose samples all scored the same are dropped). Returns (preference rows, prompts dropped)."""
    hp = ctx.hp
    k = hp.num_generations
    model = ctx.models.policy()
    rows = distributed.shard(list(ctx.train_dataset))  # torchrun: each rank judges its share; pairs gathered below
    pairs: list[dict[str, Any]] = []
    ties = 0
    per_batch = max(1, hp.batch_size // k)
    for start in range(0, len(rows), per_batch):
        batch = rows[start:start + per_batch]
        prompts = [online.prompt_text(ctx.tokenizer, r["prompt"]) for r in batch for _ in range(k)]
        rollout = online.generate(model, ctx.tokenizer, prompts, max_new_tokens=hp.max_completion_length,
                                  temperature=hp.temperature, top_p=hp.top_p, max_prompt_length=hp.max_prompt_length)
        results = reward.grader.grade_batch(row_items([r for r in batch for _ in range(k)]), rollout.texts)
        for i, row in enumerate(batch):
            group = [j for j in range(i * k, (i + 1) * k) if not results[j].failed]
            if not group:
                ties += 1
                continue
            hi = max(group, key=lambda j: results[j].reward)
            lo = min(group, key=lambda j: results[j].reward)
            if results[hi].reward == results[lo].reward:
                ties += 1
                continue
            chosen, rejected = rollout.texts[hi], rollout.texts[lo]
            if isinstance(row["prompt"], list):
                chosen, rejected = [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}]
            pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    del model
    return distributed.gather(pairs), sum(distributed.gather([ties]))


def train_reward_model(ctx: TrainContext, pairs: list[dict[str, Any]]) -> tuple[Any, float]:
    """A LoRA sequence classifier trained on the judge's pairs (TRL RewardTrainer, one epoch)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    args = ctx.trainer_args(RewardConfig, num_train_epochs=1, max_steps=-1, save_strategy="no", eval_strategy="no",
                            output_dir=str(ctx.paths.checkpoint_dir / "reward-model"))
    model = ctx.models.sequence_classifier()
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=ctx.tokenizer,
                            callbacks=ctx.stage_callbacks("rlaif reward model"))
    trainer.train()
    accuracy = [h["accuracy"] for h in trainer.state.log_history if "accuracy" in h]
    return model.eval(), float(accuracy[-1]) if accuracy else float("nan")


def reward_model_score_fn(ctx: TrainContext, model: Any) -> ppo.ScoreFn:
    from ..evaluation.scoring import reward_model_input, reward_model_scores

    def score(rows: Sequence[dict[str, Any]], prompts: Sequence[Any], texts: Sequence[str]) -> tuple[list[float], dict[str, float]]:
        inputs = [reward_model_input(p, t if not isinstance(p, list) else [{"role": "assistant", "content": t}], ctx.tokenizer)
                  for p, t in zip(prompts, texts)]
        raw = [s if s == s else 0.0 for s in reward_model_scores(model, ctx.tokenizer, inputs)]
        # A distilled reward model's scale is arbitrary (one epoch on a few pairs leaves its scores close
        # together, easily drowned by the KL penalty): standardise per batch, as reward_model's `normalize`.
        mean = sum(raw) / max(1, len(raw))
        std = (sum((s - mean) ** 2 for s in raw) / max(1, len(raw))) ** 0.5 or 1.0
        scores = [(s - mean) / std for s in raw]
        return scores, {"rewards/reward_model/mean": mean}
    return score


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    reward = grader_reward(ctx, judge=judge)
    try:
        if ctx.hp.feedback == "direct":
            return ppo.train_loop(ctx, ppo.grader_score_fn(reward), name="rlaif")
        pairs, ties = judge_pairs(ctx, reward)
        if len(pairs) < 2:
            raise ConfigError(f"rlaif (feedback: preference): the judge preferred one answer in only {len(pairs)} "
                              f"of {len(pairs) + ties} prompts; use feedback: direct or a judge with finer scores")
        model, accuracy = train_reward_model(ctx, pairs)
        if ctx.stop_requested():
            raise ctx.interrupted(0)
        log.info("rlaif: reward model trained on %d judge-labelled pairs (%d ties), train accuracy %.3f",
                 len(pairs), ties, accuracy)
        ctx.metrics.log({"rlaif/pairs": float(len(pairs)), "rlaif/ties": float(ties), "rlaif/rm_accuracy": accuracy}, step=0)
        return ppo.train_loop(ctx, reward_model_score_fn(ctx, model), name="rlaif")
    finally:
        reward.grader.close()
