"""Generate answers with the policy and with its reference on the same prompts, with the same seeds.

The policy is the PEFT model being trained ("default" adapter). The reference follows spec.model.reference
and the convention in runtime.py: a frozen "ref" adapter when the model has one (kind=adapter), else the
same base with adapters disabled (kind=base, and kind=precomputed whose log-probs came from it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from align_api.evaluation import Generation

from ..inference import eval_mode

REFERENCE_ADAPTER = "ref"


@dataclass(frozen=True)
class Answer:
    text: str
    length: int  #: generated tokens up to and excluding EOS/padding


def prompt_text(prompt: Any, tokenizer: Any) -> str:
    """A dataset prompt as the text the model continues: chat-templated messages, or a plain string as is
    (TRL feeds standard-format prompts unchanged, so the policy was trained on exactly that)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    raise TypeError(f"a prompt must be a string or a list of messages, got {type(prompt).__name__}")


def _peft(model: Any) -> Any:
    from peft import PeftModel
    while model is not None and not isinstance(model, PeftModel):
        model = getattr(model, "module", None)
    return model


@contextlib.contextmanager
def as_reference(model: Any) -> Iterator[Any]:
    """The same model object acting as the reference for the duration of the block."""
    peft_model = _peft(model)
    if peft_model is None:
        raise ValueError("evaluation needs the policy as a PEFT model (adapter 'default') to find its reference")
    if REFERENCE_ADAPTER in peft_model.peft_config:
        active = peft_model.active_adapter
        peft_model.set_adapter(REFERENCE_ADAPTER)
        try:
            yield peft_model
        finally:
            peft_model.set_adapter(active)
    else:
        with peft_model.disable_adapter():
            yield peft_model


def generate(model: Any, tokenizer: Any, prompts: Sequence[Any], settings: Generation, *, seed: int,
             batch_size: int = 8, max_prompt_length: int | None = None) -> list[Answer]:
    """One answer per prompt. Batch i is sampled after torch.manual_seed(seed + i), so two models called with
    the same seed draw the same random numbers (with greedy decoding, temperature 0, there are none)."""
    import torch
    texts = [prompt_text(p, tokenizer) for p in prompts]
    device = next(model.parameters()).device
    from ..chat import stop_ids
    eos = stop_ids(model, tokenizer)  # a generation_config list and the template's end of turn included
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    sampling = settings.temperature > 0
    answers: list[Answer] = []
    side, trunc_side = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"  # decoder-only: new tokens follow the prompt
    try:
        for index in range(0, len(texts), batch_size):
            batch = tokenizer(texts[index:index + batch_size], return_tensors="pt", padding=True,
                              truncation=max_prompt_length is not None, max_length=max_prompt_length,
                              add_special_tokens=False).to(device)
            torch.manual_seed(seed + index // batch_size)
            kwargs: dict[str, Any] = dict(max_new_tokens=settings.max_new_tokens, do_sample=sampling,
                                          pad_token_id=pad, eos_token_id=eos or None)
            if sampling:
                kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
            else:  # explicit, so a model's own sampling defaults in generation_config do not leak in
                kwargs.update(temperature=None, top_p=None, top_k=None)
            out = model.generate(**batch, **kwargs)
            for row in out[:, batch["input_ids"].shape[1]:].tolist():
                tokens = []
                for token in row:
                    if token in eos or token == pad:
                        break
                    tokens.append(token)
                answers.append(Answer(tokenizer.decode(tokens, skip_special_tokens=True), len(tokens)))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, trunc_side
    return answers


def generate_pair(model: Any, tokenizer: Any, prompts: Sequence[Any], settings: Generation, *, seed: int,
                  batch_size: int = 8, max_prompt_length: int | None = None) -> tuple[list[Answer], list[Answer]]:
    """(policy answers, reference answers) on the same prompts with the same seeds, from one model object."""
    with eval_mode(model):
        policy = generate(model, tokenizer, prompts, settings, seed=seed, batch_size=batch_size,
                          max_prompt_length=max_prompt_length)
        with as_reference(model) as reference_model:
            reference = generate(reference_model, tokenizer, prompts, settings, seed=seed, batch_size=batch_size,
                                 max_prompt_length=max_prompt_length)
    return policy, reference
