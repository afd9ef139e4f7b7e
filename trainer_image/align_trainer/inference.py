"""Running a model for its outputs, outside training: eval mode without gradients, and scalar rewards of a
sequence-classification model on the exact text TRL's RewardTrainer trained it on. A low layer: graders, the
evaluation and the algorithms all use it; it imports nothing of align_trainer."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Sequence


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """model.eval() + no grad for the block, restoring train mode after (checkpoint evaluations run mid-training)."""
    import torch
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def reward_model_input(prompt: Any, completion: Any, tokenizer: Any) -> str:
    """What TRL's RewardTrainer feeds the model for (prompt, completion): conversational rows chat-templated
    as one conversation, standard rows concatenated with EOS appended. Scoring must see the same text."""
    if isinstance(prompt, list) or isinstance(completion, list):
        messages = (prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]) + \
                   (completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}])
        return tokenizer.apply_chat_template(messages, tokenize=False)
    text = prompt + completion
    eos = tokenizer.eos_token or ""
    return text if text.endswith(eos) else text + eos


def keep_end(ids: Sequence[int], max_length: int | None) -> list[int]:
    """The last `max_length` token ids (all of them when None): a sequence-classification model reads its score
    at the last token, so a long text loses its start (the prompt's first tokens), never the answer's end."""
    ids = list(ids)
    return ids if max_length is None or len(ids) <= max_length else ids[len(ids) - max_length:]


def reward_model_scores(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 8,
                        max_length: int | None = None) -> list[float]:
    """Scalar rewards (logit 0 of a sequence-classification model) for full texts; with `max_length` each text
    is cut to its last max_length tokens (keep_end). The cut is done on the ids, not by setting the shared
    tokenizer's truncation_side, so the tokenizer the trainer and collators use is left as it was."""
    rewards: list[float] = []
    device = next(model.parameters()).device
    with eval_mode(model):
        for index in range(0, len(texts), batch_size):
            ids = tokenizer(list(texts[index:index + batch_size]), add_special_tokens=False)["input_ids"]
            batch = tokenizer.pad({"input_ids": [keep_end(row, max_length) for row in ids]},
                                  return_tensors="pt").to(device)
            logits = model(**batch).logits.float()
            rewards.extend(logits[:, 0].tolist())
    return [float(r) if math.isfinite(r) else math.nan for r in rewards]
