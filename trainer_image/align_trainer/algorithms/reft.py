"""ReFT (Luong et al. 2024, "ReFT: Reasoning with Reinforced Fine-Tuning") as one job.

Stage 1, warm-up: SFT on the same rows' reference answers for `warmupEpochs` epochs,
    L_SFT = -1/|y*| sum_t log pi(y*_t | x, y*_<t)
Stage 2, RL (`rlStage`): PPO (ppo.py; the paper's choice, with a value head and a per-token KL penalty) or
GRPO (grpo.py) on the same prompts against spec.grader (typically comparing with the golden answer, e.g.
string_check on {{item.answer}}), starting from the warmed-up policy and regularised towards the reference by
klCoef. As in the paper, the KL is to the warmed-up policy pi_SFT (not the base): the warm-up adapter is kept in
<output>/reft-warmup and loaded as the frozen reference (unless spec.model.reference.kind is adapter: the
user's reference wins). The warm-up runs with the job's divergence check and SIGTERM handling (a SIGTERM during the warm-up
exits as Interrupted; the restart warms up again).

Data: prompts with a reference: TRL prompt/completion rows (the completion, e.g. reasoning + answer, is the
warm-up's target; an `answer` field the golden answer for the grader), OpenAI chat rows (the last assistant
message) or RFT rows with an `answer` field. The warm-up has its own learning rate (`warmupLearningRate`). A
restart after the warm-up resumes the RL stage from its checkpoint.
Metrics: the warm-up's `reft/warmup_loss`; the reward of the policy before the warm-up (`reft/initial_reward`),
after it (`reft/warmup_reward`) and after RL (`reft/final_reward`) on the held-out split (data.eval; else the
training prompts, `reft/probe_heldout` 0), all from one seeded probe with the job's sampling settings, and
`reft/final_kl`, the final policy's KL to the reference on those samples; `reft/start_kl`, the same KL when the
RL stage has bound its reference and not yet updated (0 up to float error: the reference is the warmed-up policy);
then the RL stage's metrics.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import online
from ..errors import DataError
from ..graders.rewards import GraderReward, grader_reward, row_items
from ..runtime import DataKind, TrainContext, TrainResult
from . import ppo, sft
from .grpo import check_batch, grpo_settings

DATA = DataKind.PROMPT_ONLY
WARMUP_DIR = "reft-warmup"
#: prompts of the before/after probes (x numGenerations samples each)
PROBE_PROMPTS = 64
#: prompts of the start-of-RL KL probe (x numGenerations samples each): enough to see a wrong reference
START_PROMPTS = 8
log = logging.getLogger(__name__)


def warmup_rows(dataset: Any) -> list[dict[str, Any]]:
    """Prompt/completion rows for the warm-up (conversational when the prompt is): the row's reference completion
    (reasoning + answer, TRL prompt/completion rows), else its `answer`."""
    rows = []
    for index, row in enumerate(dataset):
        answer = row.get("completion") or row.get("answer")
        if isinstance(answer, list):  # a conversational completion: its last message
            answer = answer[-1].get("content") if answer and isinstance(answer[-1], dict) else None
        if not isinstance(answer, str) or not answer:
            raise DataError(f"row {index + 1}: field answer: reft's warm-up needs a reference answer (a `completion`, "
                            "an assistant message at the end of `messages`, or an `answer` field)")
        prompt = row["prompt"]
        completion: Any = [{"role": "assistant", "content": answer}] if isinstance(prompt, list) else answer
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def probe_rows(ctx: TrainContext, limit: int = PROBE_PROMPTS) -> tuple[list[dict[str, Any]], bool]:
    """The prompts the before/after rewards are measured on: the held-out split (data.eval) when there is one,
    else the first training prompts (then the numbers include memorisation). Returns (rows, held_out)."""
    held_out = ctx.eval_dataset is not None and len(ctx.eval_dataset) > 0
    dataset = ctx.eval_dataset if held_out else ctx.train_dataset
    if not held_out:
        log.warning("reft: no eval split (data.eval): the warm-up and final rewards are measured on training prompts")
    return [dataset[i] for i in range(min(limit, len(dataset)))], held_out


def probe(ctx: TrainContext, model: Any, reward: GraderReward, rows: list[dict[str, Any]], *,
          with_kl: bool = False) -> dict[str, float]:
    """Mean grader reward of `numGenerations` samples per prompt with the job's sampling settings (a fixed seed:
    every probe of a run sees the same random stream), and with_kl: the mean KL(pi || pi_ref) per completion
    (the reference of the RL stage)."""
    import torch
    repeated = [r for r in rows for _ in range(ctx.hp.num_generations)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.hp.seed)
        texts, kls = online.sample_with_kl(ctx, model, [r["prompt"] for r in repeated], kl=with_kl)
    results = reward.grader.grade_batch(row_items(repeated), texts)
    n = max(1, len(repeated))
    return {"reward": sum(r.reward for r in results) / n, **({"kl": sum(kls) / n} if with_kl else {})}


def warm_up(ctx: TrainContext, model: Any) -> float:
    """SFT on the reference completions (warmupEpochs epochs at warmupLearningRate); the last logged loss."""
    hp = ctx.hp
    return sft.warm_up(ctx, model, warmup_rows(ctx.train_dataset), "reft warm-up",
                       learning_rate=hp.warmup_learning_rate or hp.learning_rate)


def keep_warmup_adapter(ctx: TrainContext, model: Any) -> None:
    """Save the warmed-up "default" adapter atomically to <output>/reft-warmup (a restart reuses it)."""
    import shutil
    import uuid

    from ..models import DEFAULT_ADAPTER, _unwrap_peft
    target = ctx.paths.output_dir / WARMUP_DIR
    staging = target.with_name(f".{WARMUP_DIR}.tmp-{uuid.uuid4().hex[:8]}")
    _unwrap_peft(model).save_pretrained(str(staging), selected_adapters=[DEFAULT_ADAPTER])
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def bind_warmup_reference(ctx: TrainContext, rows: list[dict[str, Any]] | None = None) -> Any:
    """A bind_reference that applies spec.model.reference and then, for kind=base after a warm-up, loads the
    warm-up adapter as the frozen "ref" adapter (the reference of ReFT's KL term). With `rows`, on a fresh start,
    logs `reft/start_kl` once bound: the KL to the reference the RL stage will use, before its first update."""
    def bind(model: Any) -> None:
        from ..models import DEFAULT_ADAPTER, REFERENCE_ADAPTER, _unwrap_peft
        ctx.models.bind_reference(model)
        path = ctx.paths.output_dir / WARMUP_DIR
        if ctx.spec.model.reference.kind == "base" and (path / "adapter_config.json").is_file():
            peft_model = _unwrap_peft(model)
            peft_model.load_adapter(str(path), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
            for name, p in peft_model.named_parameters():
                if f".{REFERENCE_ADAPTER}." in name:
                    p.requires_grad_(False)
            peft_model.set_adapter(DEFAULT_ADAPTER)
        if rows and ctx.resume_from is None:
            ctx.metrics.log({"reft/start_kl": start_kl(ctx, model, rows[:START_PROMPTS])}, step=0)
    return bind


def start_kl(ctx: TrainContext, model: Any, rows: list[dict[str, Any]]) -> float:
    """Mean KL(pi || pi_ref) per completion of numGenerations samples per prompt, in a forked random stream (the
    RL stage's own samples are the same with or without this probe)."""
    import torch
    prompts = [r["prompt"] for r in rows for _ in range(ctx.hp.num_generations)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.hp.seed)
        _, kls = online.sample_with_kl(ctx, model, prompts)
    return sum(kls) / max(1, len(kls))


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    hp = ctx.hp
    if hp.rl_stage == "grpo":
        check_batch(hp)
    reward = grader_reward(ctx, judge=judge)
    model = ctx.models.policy()
    rows, held_out = probe_rows(ctx)
    found: dict[str, float] = {"reft/probe_heldout": float(held_out), "reft/probe_prompts": float(len(rows))}
    try:
        if ctx.resume_from is None and hp.warmup_epochs > 0:
            found["reft/initial_reward"] = probe(ctx, model, reward, rows)["reward"]
            found["reft/warmup_loss"] = warm_up(ctx, model)
            if ctx.stop_requested():
                raise ctx.interrupted(0)
            keep_warmup_adapter(ctx, model)
            found["reft/warmup_reward"] = probe(ctx, model, reward, rows)["reward"]
            log.info("reft warm-up: loss %.4f, %s reward %.3f -> %.3f", found["reft/warmup_loss"],
                     "held-out" if held_out else "training-prompt", found["reft/initial_reward"], found["reft/warmup_reward"])
            ctx.metrics.log(dict(found), step=0)
        result = rl_stage(ctx, model, reward, rows)
        final = probe(ctx, model, reward, rows, with_kl=True)
        found.update({"reft/final_reward": final["reward"], "reft/final_kl": final["kl"]})
        log.info("reft: %s reward after RL %.3f (KL to the reference %.4f)", "held-out" if held_out else
                 "training-prompt", final["reward"], final["kl"])
        ctx.metrics.log({"reft/final_reward": final["reward"], "reft/final_kl": final["kl"]}, step=result.steps)
        result.metrics.update(found)  # -> the termination message's finalMetrics -> status.metrics
        return result
    finally:
        reward.grader.close()


def rl_stage(ctx: TrainContext, model: Any, reward: GraderReward, rows: list[dict[str, Any]]) -> TrainResult:
    """PPO (Luong et al.) or GRPO from the warmed-up policy, with the warm-up adapter as the KL reference."""
    from trl import GRPOConfig, GRPOTrainer

    if ctx.hp.rl_stage == "ppo":
        return ppo.train_loop(ctx, ppo.grader_score_fn(reward), name="reft", model=model,
                              bind_reference=bind_warmup_reference(ctx, rows))
    args = ctx.trainer_args(GRPOConfig, **grpo_settings(ctx.hp))
    trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ctx.train_dataset,
                          eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    bind_warmup_reference(ctx, rows)(trainer.model)
    return ctx.train(trainer)
