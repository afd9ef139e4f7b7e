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
`rlaif/pairs` (judge-labelled pairs kept), `rlaif/ties` (prompts dropped) and `rlaif/rm_accuracy` (reward model train
accuracy); with held-out prompts (spec.data.eval or evalFraction), also `rlaif/rm_heldout_accuracy` (share of the
initial policy's judge-labelled held-out pairs the reward model ranks as the judge did; 0.5 is chance),
`rlaif/initial_heldout_score` and `rlaif/final_heldout_score` (the judge's mean score of the policy's held-out
answers before and after PPO: two more judge passes, outside training; these two in direct mode as well).
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


def judge_pairs(ctx: TrainContext, model: Any, reward: GraderReward,
                rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int, list[float]]:
    """numGenerations samples per prompt from `model`, judged; the best and the worst form a pair (prompts whose
    samples all scored the same are dropped). Returns (preference rows, prompts dropped, every judge score),
    gathered over the ranks (each rank judges its share of `rows`)."""
    hp = ctx.hp
    k = hp.num_generations
    rows = distributed.shard(rows)
    pairs: list[dict[str, Any]] = []
    scores: list[float] = []
    ties = 0
    per_batch = max(1, hp.batch_size // k)
    for start in range(0, len(rows), per_batch):
        batch = rows[start:start + per_batch]
        prompts = [online.prompt_text(ctx.tokenizer, r["prompt"]) for r in batch for _ in range(k)]
        rollout = online.generate(model, ctx.tokenizer, prompts, max_new_tokens=hp.max_completion_length,
                                  temperature=hp.temperature, top_p=hp.top_p, max_prompt_length=hp.max_prompt_length)
        results = reward.grader.grade_batch(row_items([r for r in batch for _ in range(k)]), rollout.texts)
        scores.extend(r.reward for r in results if not r.failed)
        for i, row in enumerate(batch):
            group = [j for j in range(i * k, (i + 1) * k) if not results[j].failed]
            if not group:
                ties += 1
                continue
            # the i-th best against the i-th worst: up to numGenerations / 2 disjoint pairs per prompt
            ranked = sorted(group, key=lambda j: results[j].reward, reverse=True)
            kept = [(hi, lo) for hi, lo in zip(ranked[:len(ranked) // 2], reversed(ranked[len(ranked) // 2:]))
                    if results[hi].reward > results[lo].reward]
            ties += not kept
            for hi, lo in kept:
                chosen, rejected = rollout.texts[hi], rollout.texts[lo]
                if isinstance(row["prompt"], list):
                    chosen, rejected = [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}]
                pairs.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected})
    return distributed.gather(pairs), sum(distributed.gather([ties])), distributed.gather(scores)


def judge_score(ctx: TrainContext, model: Any, reward: GraderReward, rows: list[dict[str, Any]]) -> float:
    """Mean judge score of the policy's numGenerations samples per prompt (the held-out probe after PPO)."""
    _, _, scores = judge_pairs(ctx, model, reward, rows)
    return sum(scores) / max(1, len(scores))


def pair_accuracy(ctx: TrainContext, model: Any, pairs: Sequence[dict[str, Any]]) -> float:
    """Share of pairs the reward model ranks as the judge did: r(x, chosen) > r(x, rejected)."""
    from ..evaluation.scoring import reward_model_input, reward_model_scores
    if not pairs:
        return float("nan")
    chosen = reward_model_scores(model, ctx.tokenizer, [reward_model_input(p["prompt"], p["chosen"], ctx.tokenizer) for p in pairs])
    rejected = reward_model_scores(model, ctx.tokenizer, [reward_model_input(p["prompt"], p["rejected"], ctx.tokenizer) for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def train_reward_model(ctx: TrainContext, pairs: list[dict[str, Any]]) -> tuple[Any, float]:
    """A LoRA sequence classifier trained on the judge's pairs (TRL RewardTrainer, rewardModelEpochs epochs at
    rewardModelLearningRate)."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    hp = ctx.hp
    args = ctx.trainer_args(RewardConfig, num_train_epochs=hp.reward_model_epochs,
                            learning_rate=hp.reward_model_learning_rate or hp.learning_rate, max_steps=-1, save_strategy="no", eval_strategy="no",
                            output_dir=str(ctx.paths.checkpoint_dir / "reward-model"))
    # a fresh classifier: spec.model.adapter.init is the POLICY's (causal-LM) adapter and cannot load onto it
    model = ctx.models.sequence_classifier(from_init=False)
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=ctx.tokenizer,
                            callbacks=ctx.stage_callbacks("rlaif reward model"))
    trainer.train()
    accuracy = [h["accuracy"] for h in trainer.state.log_history if "accuracy" in h]
    return model.eval(), float(accuracy[-1]) if accuracy else float("nan")


def centre_per_prompt(raw: Sequence[float], prompts: Sequence[Any]) -> list[float]:
    """r - mean of r over the same prompt's samples, divided by the std of the centred batch. A Bradley-Terry
    reward model is identified only up to a constant per prompt (its loss sees differences within a pair), and
    on a small base that constant dominates: whitening over the batch would hand PPO mostly prompt noise."""
    import json
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(json.dumps(prompt, sort_keys=True, default=str), []).append(i)
    centred = list(raw)
    for members in groups.values():
        mean = sum(raw[i] for i in members) / len(members)
        for i in members:
            centred[i] = raw[i] - mean
    std = (sum(c * c for c in centred) / max(1, len(centred))) ** 0.5 or 1.0
    return [c / std for c in centred]


def reward_model_score_fn(ctx: TrainContext, model: Any) -> ppo.ScoreFn:
    from ..evaluation.scoring import reward_model_input, reward_model_scores

    def score(rows: Sequence[dict[str, Any]], prompts: Sequence[Any], texts: Sequence[str]) -> tuple[list[float], dict[str, float]]:
        inputs = [reward_model_input(p, t if not isinstance(p, list) else [{"role": "assistant", "content": t}], ctx.tokenizer)
                  for p, t in zip(prompts, texts)]
        raw = [s if s == s else 0.0 for s in reward_model_scores(model, ctx.tokenizer, inputs)]
        return centre_per_prompt(raw, prompts), {"rewards/reward_model/mean": sum(raw) / max(1, len(raw))}
    return score


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    reward = grader_reward(ctx, judge=judge)
    try:
        # held-out prompts (spec.data.eval / evalFraction): the judge scores the policy's answers there before and
        # after PPO; in preference mode the initial policy's pairs there also measure the reward model
        heldout = list(ctx.eval_dataset) if ctx.eval_dataset is not None else []
        stage: dict[str, float] = {}
        score = ppo.grader_score_fn(reward)
        if ctx.hp.feedback == "preference" or heldout:
            # the initial policy (LoRA starts as the identity: the base), released before PPO builds its own
            initial = ctx.models.policy()
            if ctx.hp.feedback == "preference":
                score, stage = preference_reward(ctx, initial, reward, heldout)
            else:
                stage["rlaif/initial_heldout_score"] = judge_score(ctx, initial, reward, heldout)
            del initial
        if stage:
            ctx.metrics.log(stage, step=0)
        trained: list[Any] = []

        def bind_reference(model: Any) -> None:  # ppo.train_loop's hook: also keeps the policy for the last probe
            trained.append(model)
            ctx.models.bind_reference(model)
        result = ppo.train_loop(ctx, score, name="rlaif", bind_reference=bind_reference)
        if heldout:  # the judge once more, on the trained policy's held-out answers
            final = judge_score(ctx, trained[0], reward, heldout)
            ctx.metrics.log({"rlaif/final_heldout_score": final}, step=result.steps)
            result.metrics["rlaif/final_heldout_score"] = final
        result.metrics.update(stage)
        return result
    finally:
        reward.grader.close()


def preference_reward(ctx: TrainContext, policy: Any, reward: GraderReward,
                      heldout: list[dict[str, Any]]) -> tuple[ppo.ScoreFn, dict[str, float]]:
    """Judge-labelled pairs of the initial policy -> a reward model; returns its score function and the
    stage's metrics (pairs, ties, train and held-out pair accuracy, the held-out judge baseline)."""
    pairs, ties, _ = judge_pairs(ctx, policy, reward, list(ctx.train_dataset))
    held_pairs, _, initial = judge_pairs(ctx, policy, reward, heldout) if heldout else ([], 0, [])
    if len(pairs) < 2:
        raise ConfigError(f"rlaif (feedback: preference): the judge preferred one answer in only {len(pairs)} "
                          f"pairs of {len(ctx.train_dataset)} prompts; use feedback: direct, a higher temperature "
                          "or a judge with finer scores")
    model, accuracy = train_reward_model(ctx, pairs)
    if ctx.stop_requested():
        raise ctx.interrupted(0)
    stage = {"rlaif/pairs": float(len(pairs)), "rlaif/ties": float(ties), "rlaif/rm_accuracy": accuracy}
    if held_pairs:
        stage.update({"rlaif/rm_heldout_accuracy": pair_accuracy(ctx, model, held_pairs),
                      "rlaif/heldout_pairs": float(len(held_pairs)),
                      "rlaif/initial_heldout_score": sum(initial) / max(1, len(initial))})
    log.info("rlaif: reward model trained on %d judge-labelled pairs (%d ties), train accuracy %.3f, held-out %s",
             len(pairs), ties, accuracy, stage.get("rlaif/rm_heldout_accuracy", "n/a"))
    return reward_model_score_fn(ctx, model), stage
