"""Thought Preference Optimization (Wu et al. 2024, "Thinking LLMs: General Instruction Following with Thought
Generation", arXiv 2410.10630). Not TRL's "TPO", which is a different algorithm.

Each round, from the latest policy:
  1. the thought prompt asks the model to write its internal thoughts, then its final response after a
     separator line ("<R>"): for each prompt x, K = numGenerations responses  z_k = (thought_k, answer_k);
  2. the judge (spec.grader) scores ONLY answer_k; the thought never reaches it, so the thought is optimised
     indirectly, by how good the answer it leads to is;
  3. the best and the worst scored responses (whole: thought + answer) form a pair (z_w, z_l), ties dropped;
     a response that follows the format ranks above one that does not, whatever their scores (ours: keeps
     the policy writing thoughts; the paper's instruct models follow the format anyway);
  4. DPO on the pairs against the reference (spec.model.reference):
        L = -log sigma( beta * [ log pi(z_w|x')/pi_ref(z_w|x') - log pi(z_l|x')/pi_ref(z_l|x') ] ),  x' = thought prompt(x)
     (+ rpoAlpha * the NLL of z_w when set, TRL's "sft" term: it keeps a warmed-up policy writing the format);
Warm-up (ours; the paper starts from a strong instruct model that follows the thought prompt as is): a model
that never writes the separator would make TPO online DPO with a prompt wrapper. When the training rows carry
a written thought (a `thought` field next to the `answer`, or an `answer` that is itself "thought <R> answer")
and warmupEpochs > 0, TPO first runs SFT for warmupEpochs epochs on (thought prompt(x) -> "thought <R> answer")
so that the policy itself writes the format; rows without one are not used by the warm-up. The DPO reference
stays spec.model.reference (the base by default), as in the paper's seed model.

`rounds` rounds; each samples from the policy trained by the previous one. A response without the separator
has no thought: all of it is the answer. Samples, judge scores and pairs of each round are written to
<output>/tpo/round-<n>.jsonl for inspection.

Held-out probe (when spec.data.eval or evalFraction gives held-out prompts): numGenerations answers per
held-out prompt, judged like the rounds' answers; logged before training (`tpo/initial_heldout_reward`), after
the warm-up (`tpo/warmup_heldout_reward`, `tpo/warmup_with_thought`, `tpo/warmup_loss`) and after every round
(`tpo/heldout_reward`, `tpo/heldout_with_thought`, `tpo/heldout_kl`: summed per-token log pi - log pi_ref of the
sampled answers, i.e. a Monte-Carlo KL(pi || pi_ref) per completion).

Metrics per round (step = round): reward (mean judge score of the round's samples), tpo/best_score,
tpo/worst_score, tpo/pairs, tpo/with_thought (fraction following the format), and the round's last DPO
metrics (loss, rewards/margins, rewards/accuracies, ...).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Sequence

from align_api.constants import TPO_DEFAULT_THOUGHT_PROMPT, TPO_SEPARATOR

from .. import distributed, online
from ..errors import ConfigError, DataError
from ..graders.rewards import GraderReward, grader_reward, log_failures, row_items
from ..runtime import DataKind, TrainContext, TrainResult
from . import sft
from .dpo import loss_settings

DATA = DataKind.PROMPT_ONLY
SEPARATOR = TPO_SEPARATOR
#: rounds when hyperparameters.rounds is unset (the field is shared with iterative dpo/rpo, where unset means offline)
DEFAULT_ROUNDS = 2
log = logging.getLogger(__name__)

#: The paper's generic thought prompt (Fig. 2), with our separator.
DEFAULT_THOUGHT_PROMPT = TPO_DEFAULT_THOUGHT_PROMPT


def split_thought(response: str) -> tuple[str, str]:
    """(thought, answer): the answer follows the last separator; no separator means no thought."""
    if SEPARATOR not in response:
        return "", response
    thought, _, answer = response.rpartition(SEPARATOR)
    return thought, answer.strip()


def thought_prompt(prompt: Any, template: str) -> Any:
    """The prompt with the thought instruction wrapped around the (last) user message."""
    if isinstance(prompt, list):
        messages = [dict(m) for m in prompt]
        for m in reversed(messages):
            if m["role"] == "user":
                m["content"] = template.replace("{query}", m["content"]) if "{query}" in template \
                    else f"{template}\n{m['content']}"
                break
        return messages
    return template.replace("{query}", prompt) if "{query}" in template else f"{template}\n{prompt}"


def warmup_target(row: dict[str, Any], index: int) -> str | None:
    """The "thought <R> answer" a row teaches in the warm-up: its `thought` + `answer`, or an `answer` that
    already contains the separator; None when the row has no written thought."""
    thought, answer = row.get("thought"), row.get("answer")
    if thought is not None:
        if not isinstance(thought, str) or not thought.strip() or not isinstance(answer, str) or not answer.strip():
            raise DataError(f"row {index + 1}: field thought: tpo's warm-up needs a non-empty `thought` string and "
                            "an `answer` string next to it")
        return f"{thought}{SEPARATOR}{answer}"  # as written: the rows choose any whitespace around the separator
    return answer if isinstance(answer, str) and SEPARATOR in answer else None


def warmup_rows(dataset: Any, template: str) -> list[dict[str, Any]]:
    """SFT rows (thought prompt(x) -> "thought <R> answer") from the rows that carry a written thought."""
    rows = []
    for index, row in enumerate(dataset):
        target = warmup_target(row, index)
        if target is None:
            continue
        prompt = thought_prompt(row["prompt"], template)
        rows.append({"prompt": prompt,
                     "completion": [{"role": "assistant", "content": target}] if isinstance(prompt, list) else target})
    return rows


def check_prompt_fits(ctx: TrainContext, prompts: Sequence[Any]) -> None:
    """Every wrapped prompt plus one completion token must fit maxLength, or TRL drops or empties the rows and
    fails later with an obscure "num_samples=0" (alignctl validate checks a word-count lower bound already)."""
    longest = max((len(ctx.tokenizer(online.prompt_text(ctx.tokenizer, p), add_special_tokens=False)["input_ids"])
                   for p in prompts), default=0)
    if longest + 1 > ctx.hp.max_length:
        raise ConfigError(f"hyperparameters.maxLength ({ctx.hp.max_length}) is too small for tpo: the longest prompt "
                          f"wrapped in the thought prompt (hyperparameters.thoughtPrompt) is {longest} tokens; "
                          f"raise maxLength above {longest + ctx.hp.max_completion_length} or shorten thoughtPrompt")


def probe(ctx: TrainContext, model: Any, reward: GraderReward, rows: Sequence[dict[str, Any]],
          template: str) -> dict[str, float]:
    """numGenerations answers per prompt from the current policy: mean judged answer score, share that writes
    the separator, and the Monte-Carlo KL(pi || pi_ref) per completion (sum over tokens of log pi - log pi_ref)."""
    expanded = [r for r in rows for _ in range(ctx.hp.num_generations)]
    responses, kls = online.sample_with_kl(ctx, model, [thought_prompt(r["prompt"], template) for r in expanded])
    finite = [s for s in judge_answers(reward, expanded, responses) if s != float("-inf")]
    return {"reward": sum(finite) / max(1, len(finite)),
            "with_thought": sum(SEPARATOR in r for r in responses) / max(1, len(responses)),
            "kl": sum(kls) / max(1, len(kls))}


def judge_answers(reward: GraderReward, rows: Sequence[dict[str, Any]], responses: Sequence[str]) -> list[float]:
    """Scores of the answers only: thoughts are cut off before anything reaches the grader."""
    answers = [split_thought(r)[1] for r in responses]
    results = reward.grader.grade_batch(row_items(rows), answers, prompts=[row["prompt"] for row in rows])
    log_failures(reward.grader, results)
    return [r.reward if not r.failed else float("-inf") for r in results]


def generate_responses(ctx: TrainContext, model: Any, prompts: Sequence[Any]) -> list[str]:
    return online.sample_texts(ctx, model, prompts)


def make_pairs(rows: Sequence[dict[str, Any]], prompts: Sequence[Any], responses: Sequence[str], scores: Sequence[float],
               k: int) -> tuple[list[dict[str, Any]], list[float], list[float]]:
    """Best vs worst of each prompt's K responses, ranked by (follows the format, judge score): a response with
    a thought beats one without (otherwise DPO, which lowers every token of the rejected response, unlearns the
    separator whenever unformatted answers happen to score well); ties and all-failed groups are dropped."""
    pairs, best, worst = [], [], []
    for i in range(len(rows)):
        group = list(range(i * k, (i + 1) * k))
        rank = {j: (SEPARATOR in responses[j], scores[j]) for j in group}
        hi = max(group, key=lambda j: rank[j])
        lo = min(group, key=lambda j: rank[j])
        if rank[hi] == rank[lo] or scores[hi] == float("-inf"):
            continue
        conversational = isinstance(prompts[i], list)
        wrap = (lambda t: [{"role": "assistant", "content": t}]) if conversational else (lambda t: t)
        pairs.append({"prompt": prompts[i], "chosen": wrap(responses[hi]), "rejected": wrap(responses[lo])})
        best.append(scores[hi])
        worst.append(max(scores[lo], 0.0) if scores[lo] == float("-inf") else scores[lo])
    return pairs, best, worst


def write_round(path: Any, samples: Sequence[tuple[dict[str, Any], str, float]]) -> None:
    """The round's samples, their thoughts and judge scores, one JSON line each (for inspection)."""
    with path.open("w", encoding="utf-8") as fh:
        for row, response, score in samples:
            thought, answer = split_thought(response)
            fh.write(json.dumps({"prompt": row["prompt"], "thought": thought, "answer": answer,
                                 "score": None if score == float("-inf") else score}, default=str) + "\n")


def dpo_round(ctx: TrainContext, model: Any, pairs: list[dict[str, Any]], round_no: int) -> dict[str, float]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    hp = ctx.hp
    args = ctx.trainer_args(DPOConfig, **loss_settings(hp), save_strategy="no",
                            eval_strategy="no", output_dir=str(ctx.paths.checkpoint_dir / f"round-{round_no}"))
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), processing_class=ctx.tokenizer,
                         callbacks=ctx.stage_callbacks(f"tpo round {round_no}"))
    ctx.models.bind_reference(trainer.model)
    trainer.train()
    last = [h for h in trainer.state.log_history if "loss" in h]
    return {k: float(v) for k, v in (last[-1] if last else {}).items() if isinstance(v, (int, float)) and k != "step"}


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    import torch
    hp = ctx.hp
    rounds = hp.rounds or DEFAULT_ROUNDS
    template = hp.thought_prompt or DEFAULT_THOUGHT_PROMPT
    reward = grader_reward(ctx, judge=judge)
    model = ctx.models.policy()
    ctx.models.bind_reference(model)
    start_round, saved = online.resume_state(ctx, model)
    # torchrun: each rank samples and judges its share of the prompts (own seed); the pairs are gathered so every
    # rank trains the same DPO round (TRL's DPOTrainer deals them out again and averages gradients)
    if distributed.is_distributed() and not saved.get("rng_restored"):
        torch.manual_seed(distributed.sampling_seed(hp.seed, start_round))
    rows = distributed.shard(list(ctx.train_dataset))
    prompts = [thought_prompt(r["prompt"], template) for r in rows]
    # every prompt, not the rank's share: all ranks must stop together (one raising while another samples hangs)
    check_prompt_fits(ctx, [thought_prompt(r["prompt"], template) for split in (ctx.train_dataset, ctx.eval_dataset)
                            if split is not None for r in split])
    # held-out prompts (spec.data.eval / evalFraction): each rank probes its share, the means are averaged
    heldout = distributed.shard(list(ctx.eval_dataset)) if ctx.eval_dataset is not None else []
    out_dir = ctx.paths.output_dir / "tpo"
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    history = online.round_history(saved)
    try:
        if ctx.resume_from is None and hp.warmup_epochs > 0:
            sft_rows = warmup_rows(ctx.train_dataset, template)
            if sft_rows:
                before = probe(ctx, model, reward, heldout, template) if heldout else {}
                loss = sft.warm_up(ctx, model, sft_rows, "tpo warm-up")
                if ctx.stop_requested():  # nothing saved yet: the restart warms up again
                    raise ctx.interrupted(0)
                after = probe(ctx, model, reward, heldout or rows, template)
                stage = {"tpo/warmup_loss": loss, "tpo/warmup_rows": float(len(sft_rows)),
                         "tpo/warmup_with_thought": after["with_thought"]}
                if heldout:
                    stage.update({"tpo/initial_heldout_reward": before["reward"],
                                  "tpo/initial_heldout_with_thought": before["with_thought"],
                                  "tpo/warmup_heldout_reward": after["reward"], "tpo/warmup_heldout_kl": after["kl"]})
                log.info("tpo warm-up on %d rows: loss %.4f, %.0f%% of answers with a thought", len(sft_rows), loss,
                         100 * after["with_thought"])
                ctx.metrics.log(distributed.mean_metrics(stage), step=0)
        for round_no in range(start_round + 1, rounds + 1):
            k = hp.num_generations
            expanded_rows = [r for r in rows for _ in range(k)]
            responses = generate_responses(ctx, model, [p for p in prompts for _ in range(k)])
            scores = judge_answers(reward, expanded_rows, responses)
            pairs, best, worst = make_pairs(rows, prompts, responses, scores, k)
            pairs, best, worst = distributed.gather(pairs), distributed.gather(best), distributed.gather(worst)
            samples = distributed.gather(list(zip(expanded_rows, responses, scores)))
            scores = [score for _, _, score in samples]
            responses = [response for _, response, _ in samples]
            finite = [s for s in scores if s != float("-inf")]
            if distributed.is_main():
                write_round(out_dir / f"round-{round_no}.jsonl", samples)
            metrics = {"reward": sum(finite) / max(1, len(finite)), "tpo/pairs": float(len(pairs)),
                       "tpo/best_score": sum(best) / max(1, len(best)), "tpo/worst_score": sum(worst) / max(1, len(worst)),
                       "tpo/with_thought": sum(SEPARATOR in r for r in responses) / max(1, len(responses)),
                       "tpo/round": float(round_no)}
            log.info("tpo round %d: mean judge score %.3f, %d pairs", round_no, metrics["reward"], len(pairs))
            if not pairs:
                raise ConfigError(f"tpo round {round_no}: every prompt's {k} answers were judged equal; raise "
                                  "numGenerations or temperature, or use a judge with finer scores")
            metrics.update(dpo_round(ctx, model, pairs, round_no))
            if ctx.stop_requested():  # SIGTERM cut the round short: the restart redoes it from the last checkpoint
                raise ctx.interrupted(round_no - 1)
            if heldout:
                held = distributed.mean_metrics(probe(ctx, model, reward, heldout, template))
                metrics.update({"tpo/heldout_reward": held["reward"], "tpo/heldout_with_thought": held["with_thought"],
                                "tpo/heldout_kl": held["kl"]})
            online.end_round(ctx, model, metrics, history, round_no, rounds)
        if history:  # the last round's samples predate its DPO: probe the final policy once more
            responses = generate_responses(ctx, model, [p for p in prompts for _ in range(hp.num_generations)])
            final = [s for s in distributed.gather(judge_answers(
                reward, [r for r in rows for _ in range(hp.num_generations)], responses)) if s != float("-inf")]
            metrics["tpo/final_reward"] = sum(final) / max(1, len(final))
            ctx.metrics.log({"tpo/final_reward": metrics["tpo/final_reward"]}, step=rounds)
        result = ctx.finish(model, step=rounds, total_steps=rounds, metrics=metrics)
        result.extra["rounds"] = history
        return result
    finally:
        reward.grader.close()
