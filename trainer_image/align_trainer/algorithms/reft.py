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

Data: prompts with a reference answer: OpenAI chat rows (the last assistant message is the answer) or RFT
rows with an `answer` field. A restart after the warm-up resumes the RL stage from its checkpoint.
Metrics: the warm-up's `reft/warmup_loss`, the policy's reward before training (`reft/initial_reward`) and
after the warm-up (`reft/warmup_reward`), then GRPO's metrics.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import online
from ..errors import DataError
from ..graders.rewards import GraderReward, grader_reward, row_items
from ..runtime import DataKind, TrainContext, TrainResult
from . import ppo
from .grpo import check_batch, grpo_settings

DATA = DataKind.PROMPT_ONLY
WARMUP_DIR = "reft-warmup"
log = logging.getLogger(__name__)


def warmup_rows(dataset: Any) -> list[dict[str, Any]]:
    """Prompt/completion rows for the warm-up (conversational when the prompt is)."""
    rows = []
    for index, row in enumerate(dataset):
        answer = row.get("answer")
        if not isinstance(answer, str) or not answer:
            raise DataError(f"row {index + 1}: field answer: reft's warm-up needs a reference answer (an assistant "
                            "message at the end of `messages`, or an `answer` field)")
        prompt = row["prompt"]
        completion: Any = [{"role": "assistant", "content": answer}] if isinstance(prompt, list) else answer
        rows.append({"prompt": prompt, "completion": completion})
    return rows


def sample_reward(ctx: TrainContext, model: Any, reward: GraderReward, n_prompts: int = 8) -> float:
    """Mean grader reward of the current policy on the first prompts (a cheap before/after probe)."""
    hp = ctx.hp
    rows = [ctx.train_dataset[i] for i in range(min(n_prompts, len(ctx.train_dataset)))]
    prompts = [online.prompt_text(ctx.tokenizer, r["prompt"]) for r in rows for _ in range(hp.num_generations)]
    rollout = online.generate(model, ctx.tokenizer, prompts, max_new_tokens=hp.max_completion_length,
                              temperature=hp.temperature, top_p=hp.top_p)
    items = row_items([r for r in rows for _ in range(hp.num_generations)])
    results = reward.grader.grade_batch(items, rollout.texts)
    return sum(r.reward for r in results) / max(1, len(results))


def warm_up(ctx: TrainContext, model: Any) -> float:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    hp = ctx.hp
    args = ctx.trainer_args(SFTConfig, num_train_epochs=hp.warmup_epochs, max_steps=-1, save_strategy="no",
                            eval_strategy="no", completion_only_loss=hp.completion_only_loss,
                            output_dir=str(ctx.paths.checkpoint_dir / "warmup"))
    # stage callbacks only: the RL stage owns the step counter, the progress and the checkpoints
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(warmup_rows(ctx.train_dataset)),
                         processing_class=ctx.tokenizer, callbacks=ctx.stage_callbacks("reft warm-up"))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return float(losses[-1]) if losses else float("nan")


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


def bind_warmup_reference(ctx: TrainContext) -> Any:
    """A bind_reference that applies spec.model.reference and then, for kind=base after a warm-up, loads the
    warm-up adapter as the frozen "ref" adapter (the reference of ReFT's KL term)."""
    def bind(model: Any) -> None:
        from ..models import DEFAULT_ADAPTER, REFERENCE_ADAPTER, _unwrap_peft
        ctx.models.bind_reference(model)
        path = ctx.paths.output_dir / WARMUP_DIR
        if ctx.spec.model.reference.kind != "base" or not (path / "adapter_config.json").is_file():
            return
        peft_model = _unwrap_peft(model)
        peft_model.load_adapter(str(path), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        for name, p in peft_model.named_parameters():
            if f".{REFERENCE_ADAPTER}." in name:
                p.requires_grad_(False)
        peft_model.set_adapter(DEFAULT_ADAPTER)
    return bind


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    from trl import GRPOConfig, GRPOTrainer

    hp = ctx.hp
    if hp.rl_stage == "grpo":
        check_batch(hp)
    reward = grader_reward(ctx, judge=judge)
    model = ctx.models.policy()
    try:
        if ctx.resume_from is None and hp.warmup_epochs > 0:
            before = sample_reward(ctx, model, reward)
            loss = warm_up(ctx, model)
            if ctx.stop_requested():
                raise ctx.interrupted(0)
            keep_warmup_adapter(ctx, model)
            after = sample_reward(ctx, model, reward)
            log.info("reft warm-up: loss %.4f, reward %.3f -> %.3f", loss, before, after)
            ctx.metrics.log({"reft/warmup_loss": loss, "reft/initial_reward": before, "reft/warmup_reward": after}, step=0)
        if hp.rl_stage == "ppo":
            return ppo.train_loop(ctx, ppo.grader_score_fn(reward), name="reft", model=model,
                                  bind_reference=bind_warmup_reference(ctx))
        args = ctx.trainer_args(GRPOConfig, **grpo_settings(hp))
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=ctx.train_dataset,
                              eval_dataset=ctx.eval_dataset, processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
        bind_warmup_reference(ctx)(trainer.model)
        return ctx.train(trainer)
    finally:
        reward.grader.close()
