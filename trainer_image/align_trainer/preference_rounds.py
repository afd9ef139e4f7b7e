"""Iterative preference rounds for dpo and rpo (`hyperparameters.rounds`), as in Nemotron-4 340B's iterative
RPO and iterative/online DPO (Xu et al. 2023, "Some things are more CRINGE than others"; Yuan et al. 2024).

Each round n = 1..rounds, from the latest policy:
  1. sample K = numGenerations answers for each training prompt (temperature, topP, maxCompletionLength);
  2. score every answer with spec.grader (a reward_model, a judge or any OpenAI grader);
  3. pair the best and the worst answer of each prompt, with their reward gap r(best) - r(worst) (ties and
     prompts whose answers all failed grading are dropped);
  4. train on the pairs with the algorithm's loss (dpo: DPO and its lossType variants; rpo: D(beta h || eta gap)),
     against the reference: the starting reference in every round (`roundReference: fixed`), or the policy as it
     was after the previous round (`previous`: round n's reference is a frozen copy of round n-1's adapter).

Written per round under <output>/rounds/: round-<n>.jsonl (every sample with its score and whether it was the
pair's chosen/rejected), round-<n>.eval.jsonl (held-out samples, when there is an eval split), and
round-<n>.pairs.json (the pairs and the grader-health window, written before training: a restart in the middle of a round trains that round
again on the same samples without sampling or grading again). A checkpoint is saved after each round; a restart
resumes from the last finished round.

Metrics per round (step = round): reward (mean score of the round's samples), rounds/best_score,
rounds/worst_score, rounds/pairs, rounds/reward_gap_mean, rounds/eval_reward (mean score of K samples per
held-out prompt from the policy after the round, fixed sampling seed; logged at step 0 for the starting policy),
and the round's last training metrics (loss, rewards/margins, rewards/accuracies, ...).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from . import online, runstate
from .errors import ConfigError
from .graders.rewards import GraderReward, grader_reward, log_failures, row_items
from .runtime import TrainContext, TrainResult

log = logging.getLogger(__name__)
#: (ctx, model, pairs dataset with prompt/chosen/rejected/reward_gap, round) -> a TRL trainer, not yet trained
RoundTrainer = Callable[[TrainContext, Any, Any, int], Any]
#: added to the seed for held-out sampling, so every round's evaluation draws the same random stream
EVAL_SEED_OFFSET = 7919


def sample(ctx: TrainContext, model: Any, prompts: Sequence[Any], k: int) -> list[str]:
    """K answers per prompt, prompt-major ([p0 a0, p0 a1, ..., p1 a0, ...])."""
    return online.sample_texts(ctx, model, [p for p in prompts for _ in range(k)])


def score(reward: GraderReward, rows: Sequence[dict[str, Any]], answers: Sequence[str], k: int) -> list[float]:
    """Grader scores of prompt-major answers; a failed grading is -inf (never chosen, never a pair's gap)."""
    items = row_items([r for r in rows for _ in range(k)])
    prompts = [r["prompt"] for r in rows for _ in range(k)]
    results = reward.grader.grade_batch(items, list(answers), prompts=prompts)
    log_failures(reward.grader, results)
    return [r.reward if not r.failed and math.isfinite(r.reward) else float("-inf") for r in results]


def best_vs_worst(prompts: Sequence[Any], answers: Sequence[str], scores: Sequence[float],
                  k: int) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """One pair per prompt: its best and worst answer with the reward gap; and the (best, worst) indices."""
    pairs, picked = [], []
    for i, prompt in enumerate(prompts):
        group = range(i * k, (i + 1) * k)
        scored = [j for j in group if scores[j] != float("-inf")]
        if len(scored) < 2:
            continue
        hi = max(scored, key=lambda j: scores[j])
        lo = min(scored, key=lambda j: scores[j])
        if scores[hi] == scores[lo]:
            continue
        wrap = (lambda t: [{"role": "assistant", "content": t}]) if isinstance(prompt, list) else (lambda t: t)
        pairs.append({"prompt": prompt, "chosen": wrap(answers[hi]), "rejected": wrap(answers[lo]),
                      "reward_gap": scores[hi] - scores[lo]})
        picked.append((hi, lo))
    return pairs, picked


def move_reference(model: Any) -> None:
    """The "ref" adapter becomes a frozen copy of the current policy adapter (roundReference: previous)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from .models import DEFAULT_ADAPTER, REFERENCE_ADAPTER, _unwrap_peft
    peft_model = _unwrap_peft(model)
    if peft_model is None:
        raise ConfigError("roundReference: previous needs a LoRA policy (spec.model.adapter)")
    if REFERENCE_ADAPTER in peft_model.peft_config:
        peft_model.delete_adapter(REFERENCE_ADAPTER)
    peft_model.add_adapter(REFERENCE_ADAPTER, copy.deepcopy(peft_model.peft_config[DEFAULT_ADAPTER]))
    state = get_peft_model_state_dict(peft_model, adapter_name=DEFAULT_ADAPTER)
    set_peft_model_state_dict(peft_model, state, adapter_name=REFERENCE_ADAPTER)
    for name, p in peft_model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in name:
            p.requires_grad_(False)
    peft_model.set_adapter(DEFAULT_ADAPTER)


def _write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, default=str) + "\n")
    tmp.replace(path)


def _finite_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v != float("-inf")]
    return sum(finite) / max(1, len(finite))


def held_out_reward(ctx: TrainContext, model: Any, reward: GraderReward, rows: Sequence[dict[str, Any]],
                    out: Path | None) -> float:
    """Mean score of K samples per held-out prompt, drawn with a fixed seed (comparable across rounds)."""
    import torch
    k = ctx.hp.num_generations
    with torch.random.fork_rng():  # the training stream of random numbers (CPU and CUDA) is left as it was
        torch.manual_seed(ctx.hp.seed + EVAL_SEED_OFFSET)
        answers = sample(ctx, model, [r["prompt"] for r in rows], k)
    scores = score(reward, rows, answers, k)
    if out is not None:
        _write_jsonl(out, [{"prompt": rows[j // k]["prompt"], "answer": a, "score": None if s == float("-inf") else s}
                           for j, (a, s) in enumerate(zip(answers, scores))])
    return _finite_mean(scores)


def round_pairs(ctx: TrainContext, model: Any, reward: GraderReward, rows: Sequence[dict[str, Any]],
                round_no: int, out_dir: Path) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The round's pairs and sampling metrics; reused from round-<n>.pairs.json when a restart repeats the round."""
    saved = out_dir / f"round-{round_no}.pairs.json"
    if saved.is_file():
        data = json.loads(saved.read_text())
        log.info("round %d: reusing its %d pairs from %s (restart in the middle of the round)", round_no,
                 len(data["pairs"]), saved)
        runstate.set_health_state(ctx, data.get(runstate.HEALTH_KEY))  # the window as it was after that grading
        return data["pairs"], data["metrics"]
    k = ctx.hp.num_generations
    prompts = [r["prompt"] for r in rows]
    answers = sample(ctx, model, prompts, k)
    scores = score(reward, rows, answers, k)
    pairs, picked = best_vs_worst(prompts, answers, scores, k)
    role = {hi: "chosen" for hi, _ in picked} | {lo: "rejected" for _, lo in picked}
    _write_jsonl(out_dir / f"round-{round_no}.jsonl",
                 [{"prompt": prompts[j // k], "answer": a, "score": None if s == float("-inf") else s,
                   "pair": role.get(j)} for j, (a, s) in enumerate(zip(answers, scores))])
    metrics = {"reward": _finite_mean(scores), "rounds/pairs": float(len(pairs)),
               "rounds/best_score": _finite_mean([scores[hi] for hi, _ in picked]),
               "rounds/worst_score": _finite_mean([scores[lo] for _, lo in picked]),
               "rounds/reward_gap_mean": _finite_mean([p["reward_gap"] for p in pairs])}
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pairs": pairs, "metrics": metrics, runstate.HEALTH_KEY: runstate.health_state(ctx)},
                              default=str))
    tmp.replace(saved)
    return pairs, metrics


def train_round(ctx: TrainContext, model: Any, pairs: list[dict[str, Any]], round_no: int,
                make_trainer: RoundTrainer) -> dict[str, float]:
    from datasets import Dataset
    from transformers import PrinterCallback

    from .models import REFERENCE_ADAPTER, _unwrap_peft
    peft_model = _unwrap_peft(model)
    if peft_model is not None and REFERENCE_ADAPTER in peft_model.peft_config:  # TRL adds its own "ref" copy and
        peft_model.delete_adapter(REFERENCE_ADAPTER)  # refuses a model that has one (the previous round's)
    trainer = make_trainer(ctx, model, Dataset.from_list(pairs), round_no)
    trainer.remove_callback(PrinterCallback)  # a round's inner steps are not the job's steps: metrics go per round
    ctx.models.bind_reference(trainer.model)  # the spec's reference (TRL may have added its own "ref" copy)
    if ctx.hp.round_reference == "previous" and round_no > 1:
        move_reference(trainer.model)
    trainer.train()
    last = [h for h in trainer.state.log_history if "loss" in h]
    return {k: float(v) for k, v in (last[-1] if last else {}).items() if isinstance(v, (int, float)) and k != "step"}


def round_args(ctx: TrainContext, round_no: int) -> dict[str, Any]:
    """TRL config overrides of a round: no HF checkpoints or eval inside a round (a round is our unit of resume)."""
    return dict(save_strategy="no", eval_strategy="no", precompute_ref_log_probs=False,
                output_dir=str(ctx.paths.checkpoint_dir / f"round-{round_no}"))


def run(ctx: TrainContext, algorithm: str, make_trainer: RoundTrainer, *, judge: Any = None) -> TrainResult:
    online.require_single_process(f"iterative {algorithm}")
    hp = ctx.hp
    rounds = int(hp.rounds or 1)
    reward = grader_reward(ctx, judge=judge)
    model = ctx.models.policy()
    ctx.models.bind_reference(model)
    start_round, saved = online.resume_state(ctx, model)
    rows = list(ctx.train_dataset)
    held_out = list(ctx.eval_dataset) if ctx.eval_dataset is not None else []
    out_dir = ctx.paths.output_dir / "rounds"
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    history = online.round_history(saved)
    try:
        if held_out and start_round == 0:
            start = held_out_reward(ctx, model, reward, held_out, out_dir / "round-0.eval.jsonl")
            ctx.metrics.log({"rounds/eval_reward": start}, step=0)
            log.info("%s rounds: held-out reward of the starting policy %.3f", algorithm, start)
        for round_no in range(start_round + 1, rounds + 1):
            pairs, metrics = round_pairs(ctx, model, reward, rows, round_no, out_dir)
            log.info("%s round %d: mean score %.3f, %d pairs", algorithm, round_no, metrics["reward"], len(pairs))
            if not pairs:
                raise ConfigError(f"{algorithm} round {round_no}: every prompt's {hp.num_generations} answers scored "
                                  "the same; raise numGenerations or temperature, or use a grader with finer scores")
            metrics = {**metrics, **train_round(ctx, model, pairs, round_no, make_trainer), "rounds/round": float(round_no)}
            if held_out:
                metrics["rounds/eval_reward"] = held_out_reward(ctx, model, reward, held_out,
                                                                out_dir / f"round-{round_no}.eval.jsonl")
            online.end_round(ctx, model, metrics, history, round_no, rounds)
        result = ctx.finish(model, step=rounds, total_steps=rounds, metrics=metrics)
        result.extra["rounds"] = history
        return result
    finally:
        reward.grader.close()
