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


def reward_model_scores(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 8,
                        max_length: int | None = None) -> list[float]:
    """Scalar rewards (logit 0 of a sequence-classification model) for full texts."""
    import torch
    rewards: list[float] = []
    device = next(model.parameters()).device
    with eval_mode(model):
        for index in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[index:index + batch_size]), return_tensors="pt", padding=True,
                              truncation=max_length is not None, max_length=max_length,
                              add_special_tokens=False).to(device)
            logits = model(**batch).logits.float()
            rewards.extend(logits[:, 0].tolist())
    return [float(r) if math.isfinite(r) else math.nan for r in rewards]
