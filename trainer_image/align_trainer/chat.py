"""What a chat template says about stopping: the token that closes an assistant turn, and every id that ends a
completion. A leaf module (tokenizer and model only), shared by the trainer's sampling, TRL's (through the model's
generation_config) and the evaluation's."""

from __future__ import annotations

from typing import Any

_MARK = "ALIGNMARK7"


def prompt_text(tokenizer: Any, prompt: Any) -> str:
    """A conversational prompt rendered with the generation prompt (as TRL renders it); a plain prompt as is."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return str(prompt)


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the chat template writes right after an assistant message (<|im_end|> in ChatML,
    <|eot_id|> in Llama 3, <end_of_turn> in Gemma), or None when the template writes none. Many tokenizers
    declare another EOS (<|endoftext|>), so a model that ends its turn would otherwise run on to the length limit."""
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": _MARK}], tokenize=False)
    except Exception:  # no template, or one with other rules: nothing to learn from it
        return None
    after = text.split(_MARK, 1)[1] if _MARK in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return int(ids[0]) if ids and ids[0] in special else None


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS, each one the model's generation_config declares, and
    the template's end-of-turn token (TRL's GRPO stops on the first two; models.Models adds the third to the
    generation_config, so TRL's samplers stop there too)."""
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    declared = [declared] if isinstance(declared, int) else list(declared or [])
    first = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    turn = end_of_turn_id(tokenizer)
    return list(dict.fromkeys(first + [int(t) for t in declared] + ([turn] if turn is not None else [])))
