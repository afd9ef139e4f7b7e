"""Supervised fine-tuning of the LoRA policy (TRL SFTTrainer).

Loss: mean token negative log-likelihood  L = -1/|T| * sum_{t in T} log pi(y_t | y_<t, x), where T are the
assistant (completion) tokens when `completionOnlyLoss` is on. OpenAI chat rows are tokenized here so that
each assistant message's `weight` (0 = context only, 1 = learn it) decides whether its tokens are in T;
prompt/completion and text rows go to TRL unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import DataError
from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.SFT
IGNORE = -100


def _render(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, Any]], *, completion_only: bool,
                          max_length: int | None) -> dict[str, list[int]]:
    """input_ids and labels (IGNORE outside trained assistant turns) for one weighted conversation.

    Trained spans are found in characters: render the conversation up to assistant turn i with a
    generation prompt (span start) and including turn i (span end); a token is trained when its
    characters lie inside a span. This works with any chat template whose renderings are prefixes of each
    other, and with any fast tokenizer (offsets), without assuming token boundaries line up. A conversation
    longer than `max_length` loses its start.
    """
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    text = _render(tokenizer, plain, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or not message.get("weight", 1):
            continue
        start = len(_render(tokenizer, plain[:i], generation_prompt=True)) if i else 0
        upto = _render(tokenizer, plain[: i + 1], generation_prompt=False)
        if not text.startswith(upto):
            raise DataError("the chat template does not render a conversation prefix as a prefix of the whole "
                            "conversation; per-message weights cannot be located")
        spans.append((start, len(upto)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    if not completion_only:
        labels = ids[:]
    else:
        labels = [tok if any(s <= a and b <= e and b > a for s, e in spans) else IGNORE
                  for tok, (a, b) in zip(ids, encoded["offset_mapping"])]
    if max_length is not None and len(ids) > max_length:
        # keep the end: the last answer and its end-of-turn token survive, the oldest context goes (TRL's
        # keep_start would cut the answer first; see align_trainer.truncation for the other row types)
        ids, labels = ids[-max_length:], labels[-max_length:]
    return {"input_ids": ids, "labels": labels}


def prepare(dataset: Any, tokenizer: Any, *, completion_only: bool, max_length: int | None) -> Any:
    """Tokenize OpenAI chat rows ({"messages"}) with weights; other SFT rows are returned unchanged."""
    if dataset is None or "messages" not in dataset.column_names:
        return dataset
    out = dataset.map(lambda row: tokenize_conversation(tokenizer, row["messages"], completion_only=completion_only,
                                                        max_length=max_length),
                      remove_columns=dataset.column_names, desc="Tokenizing conversations")
    return out.filter(lambda row: any(x != IGNORE for x in row["labels"]), desc="Dropping rows truncated to nothing")


def flattens(hp: Any, attn_implementation: str | None) -> bool:
    """Whether a micro-batch's examples share one flattened row: packing, or paddingFree with flash attention."""
    return bool(hp.packing or (hp.padding_free and attn_implementation == "flash_attention_2"))


def micro_batching(hp: Any, attn_implementation: str | None) -> dict[str, int]:
    """Micro-batching for packing and paddingFree. Both flatten examples into one sequence, and only flash
    attention's varlen kernels skip the work between examples. Elsewhere (sdpa, eager: CPU, GPUs without
    flash-attn), attention over B flattened rows costs (B*L)^2 instead of B*L^2, which eats the gain (measured:
    docs/performance.md). There each micro-batch is one packed row, or one example (which has no padding to
    remove), and gradient accumulation keeps the optimizer batch (TRL normalises the loss by the tokens of the
    whole accumulated batch, so the update is the same)."""
    if not (hp.packing or hp.padding_free) or attn_implementation == "flash_attention_2":
        return {}
    return dict(per_device_train_batch_size=1, per_device_eval_batch_size=1,
                gradient_accumulation_steps=hp.batch_size * hp.gradient_accumulation_steps)


def build_trainer(ctx: TrainContext) -> Any:
    """The SFTTrainer for this job, not yet trained. With `packing`, TRL's best-fit-decreasing packing puts
    several examples in one row of at most maxLength tokens and runs padding-free: the collator emits
    position_ids restarting at 0 per example (no attention mask), from which transformers builds a
    block-diagonal mask (flash attention: varlen kernels), so packed examples do not attend to each other."""
    from trl import SFTConfig, SFTTrainer

    hp = ctx.hp
    args = ctx.trainer_args(SFTConfig, completion_only_loss=hp.completion_only_loss, packing=hp.packing,
                            **micro_batching(hp, ctx.device.attn_implementation))
    kwargs = dict(completion_only=hp.completion_only_loss, max_length=hp.max_length)
    train = prepare(ctx.train_dataset, ctx.tokenizer, **kwargs)
    if len(train) == 0:
        raise DataError("no SFT rows left: no conversation has a trained token within its last maxLength tokens "
                        "(raise hyperparameters.maxLength)")
    trainer = SFTTrainer(model=ctx.models.policy(), args=args, train_dataset=train,
                         eval_dataset=prepare(ctx.eval_dataset, ctx.tokenizer, **kwargs),
                         processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    if not hp.packing and flattens(hp, ctx.device.attn_implementation):  # packing is padding-free already
        make_padding_free(trainer)
    return trainer


def make_padding_free(trainer: Any) -> None:
    """hyperparameters.paddingFree with flash attention: TRL's own padding-free collator on a trainer built padded
    (elsewhere micro_batching gives one example per micro-batch, which has no padding to remove).

    The collator concatenates a micro-batch's examples into one row, with position ids restarting at 0 per
    example and no attention mask (transformers then builds a block-diagonal mask, or flash attention's
    varlen kernels run), and masks the label of each example's first token. TRL refuses `padding_free=True`
    without packing while `max_length` is set, yet its dataset preparation truncates to `max_length` only when
    it is set. So the trainer is built padded, with maxLength (TRL tokenizes, truncates every row and drops
    rows left without a trained token, as for any SFT job), and only the collator changes: the same dataclass
    with `padding_free=True` (pad token and pad_to_multiple_of kept)."""
    trainer.data_collator = dataclasses.replace(trainer.data_collator, padding_free=True)
    trainer.padding_free = True


def run(ctx: TrainContext) -> TrainResult:
    return ctx.train(build_trainer(ctx))


def warm_up(ctx: TrainContext, model: Any, rows: list[dict[str, Any]], stage: str, *,
            learning_rate: float | None = None) -> float:
    """An SFT stage inside another algorithm (reft's and tpo's warm-ups): TRL's SFTTrainer on prompt/completion
    rows for warmupEpochs epochs, with the job's stage callbacks only (the outer algorithm owns the step
    counter, the progress and the checkpoints). Returns the last logged loss."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    hp = ctx.hp
    args = ctx.trainer_args(SFTConfig, num_train_epochs=hp.warmup_epochs, max_steps=-1, save_strategy="no",
                            eval_strategy="no", completion_only_loss=hp.completion_only_loss,
                            output_dir=str(ctx.paths.checkpoint_dir / "warmup"),
                            **({"learning_rate": learning_rate} if learning_rate is not None else {}))
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=ctx.tokenizer,
                         callbacks=ctx.stage_callbacks(stage))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return float(losses[-1]) if losses else float("nan")
