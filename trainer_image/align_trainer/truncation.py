"""Fit rows into hyperparameters.maxLength by cutting the prompt from the left, so the answer is kept.

TRL 1.16's trainers truncate prompt + answer with `keep_start` only (`keep_end` is deprecated) and DPO drops a row
whose prompt alone fills `max_length`: with a real chat template (a system message, role headers) a small
maxLength dropped every row and torch failed with `num_samples=0`. Here, before TRL tokenizes, each prompt is cut
from its start, as TRL's old `max_prompt_length` with `truncation_mode="keep_end"` did, to

    budget = min(maxPromptLength, max(maxLength - longest answer, floor)),   floor = maxPromptLength or maxLength // 2

tokens of the rendered prompt (chat template and generation prompt included). An answer that fits beside the floor
is kept whole, end-of-turn token included; a longer one keeps its start (TRL cuts its end). Conversational prompts
lose content from their first message on (the system message first), never the template's structure, so the
model still sees well-formed turns. A maxLength too small for the template's own tokens around an empty prompt
plus one answer token is a ConfigError naming hyperparameters.maxLength.

Where the policy writes the answer (prompt-only rows: the online algorithms but tpo, which checks its wrapped
prompt itself, and iterative rounds), the answer has at most maxCompletionLength tokens and every prompt is cut to

    budget = prompt_budget(hp) = min(maxPromptLength, maxLength - maxCompletionLength)

so prompt + completion fit maxLength: TRL 1.x's GRPO/RLOO configs have neither a maxLength nor a prompt limit, and
our loops (ppo, rlaif) sample from these fitted rows. Validation keeps the budget >= 4.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .chat import prompt_text
from .errors import ConfigError

log = logging.getLogger(__name__)

#: answer columns per row type (preference pairs, unpaired KTO rows, SFT prompt/completion rows)
ANSWERS = ("chosen", "rejected", "completion")


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def answer_length(tokenizer: Any, prompt: Any, answer: Any, prompt_len: int) -> int:
    """Tokens the answer adds after the rendered prompt of `prompt_len` tokens (what TRL trains on: content and
    end-of-turn)."""
    if isinstance(prompt, list):
        return len(_ids(tokenizer, tokenizer.apply_chat_template(prompt + answer, tokenize=False))) - prompt_len
    return len(_ids(tokenizer, answer)) + 1  # TRL appends EOS to standard answers


def _cut_left(tokenizer: Any, text: str, tokens: int) -> str:
    """`text` without its first `tokens` tokens (cut at a token's character offset, so nothing is re-encoded)."""
    if tokens <= 0:
        return text
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return "" if tokens >= len(offsets) else text[offsets[tokens][0]:]


def cut_prompt(tokenizer: Any, prompt: Any, budget: int) -> Any:
    """`prompt` cut from the left until its rendering is at most `budget` tokens (or nothing is left to cut).
    A conversation loses text from its oldest message on; before the last message is cut, the oldest emptied
    turns are dropped, a user and its assistant reply together (an emptied turn still costs its role header and
    end-of-turn tokens: a long chat would otherwise fill the budget with empty turns). System messages stay (a
    template may put a default one in a dropped one's place)."""
    if not isinstance(prompt, list):
        return _cut_left(tokenizer, prompt, len(_ids(tokenizer, prompt)) - budget)
    messages = [dict(m) for m in prompt]
    for _ in range(4 * len(messages) + 4):  # each pass empties or drops a message or closes the gap (re-measured)
        excess = len(_ids(tokenizer, prompt_text(tokenizer, messages))) - budget
        if excess <= 0:
            break
        first = next((i for i, m in enumerate(messages) if m["content"]), None)
        if first is None or first == len(messages) - 1:
            turn = _emptied_turn(messages)
            if turn is not None:
                del messages[turn:turn + 2]
                continue
        if first is None:
            break
        _cut_first(tokenizer, messages, excess)
    return messages


def _cut_first(tokenizer: Any, messages: list[dict[str, Any]], tokens: int) -> bool:
    """The first message with text loses `tokens` tokens from its start (in place); False if none has text."""
    first = next((m for m in messages if m.get("content")), None)
    if first is None:
        return False
    first["content"] = _cut_left(tokenizer, first["content"], tokens)
    return True


def _emptied_turn(messages: list[dict[str, Any]]) -> int | None:
    """Where the oldest emptied turn (two messages after the system ones: a user message and its reply) starts,
    when both are empty and the last message is not among them; None otherwise. Dropping two keeps the roles
    alternating, which some templates require."""
    start = next((i for i, m in enumerate(messages) if m.get("role") != "system"), None)
    if start is None or start + 2 > len(messages) - 1:
        return None
    pair = messages[start:start + 2]
    return start if not any(m["content"] for m in pair) and all(m.get("role") != "system" for m in pair) else None


@dataclass
class FitReport:
    rows: int = 0
    cut: int = 0
    longest_prompt: int = 0
    answers_cut: int = 0


def cut_answer(tokenizer: Any, prompt: Any, answer: Any, budget: int, prompt_len: int) -> Any:
    """`answer` cut from its start until it adds at most `budget` tokens after `prompt` (`prompt_len` tokens
    rendered; answer_length), so its end (the end-of-turn token where a reward model reads its score) is kept."""
    for _ in range(4):  # a cut can merge tokens at its edge: re-measured
        excess = answer_length(tokenizer, prompt, answer, prompt_len) - budget
        if excess <= 0:
            break
        if not isinstance(answer, list):
            answer = _cut_left(tokenizer, answer, excess)
            continue
        answer = [dict(m) for m in answer]
        if not _cut_first(tokenizer, answer, excess):
            break
    return answer


def fit_answers(tokenizer: Any, row: dict[str, Any], max_length: int, report: FitReport) -> dict[str, Any]:
    """A (prompt-fitted) row whose answers are cut from their start so that prompt + answer fit max_length: TRL's
    RewardTrainer drops every pair longer than max_length instead of truncating it (on real pairs, with answers
    of hundreds of tokens, nearly all of them)."""
    prompt = row.get("prompt")
    if prompt is None:
        return row
    prompt_len = len(_ids(tokenizer, prompt_text(tokenizer, prompt)))
    out = dict(row)
    for key in ANSWERS:
        if key in row:
            out[key] = cut_answer(tokenizer, prompt, row[key], max_length - prompt_len, prompt_len)
            report.answers_cut += out[key] != row[key]
    return out


def fit_row(tokenizer: Any, row: dict[str, Any], max_length: int, max_prompt_length: int | None,
            report: FitReport) -> dict[str, Any]:
    answers = [row[k] for k in ANSWERS if k in row]
    prompt = row.get("prompt")
    if prompt is None or not answers:
        return row
    report.rows += 1
    prompt_len = len(_ids(tokenizer, prompt_text(tokenizer, prompt)))
    if prompt_len > report.longest_prompt:
        report.longest_prompt = prompt_len
    floor = max_prompt_length or max_length // 2
    if prompt_len <= floor:  # the budget is never below the floor: nothing to cut (most rows; no more tokenizing)
        return row
    longest = max(answer_length(tokenizer, prompt, a, prompt_len) for a in answers)
    budget = max(max_length - longest, floor)
    if max_prompt_length:
        budget = min(budget, max_prompt_length)
    if prompt_len <= budget:
        return row
    cut = cut_prompt(tokenizer, prompt, budget)
    left = len(_ids(tokenizer, prompt_text(tokenizer, cut)))
    if left >= max_length:  # the template's own tokens around an empty prompt fill maxLength
        raise ConfigError(f"hyperparameters.maxLength ({max_length}) is too small for the chat template: the prompt "
                          f"rendered with every message emptied (older turns dropped) still takes {left} tokens "
                          f"(this row's prompt has {prompt_len}); raise maxLength well above {left}: the answers "
                          "need room too")
    report.cut += 1
    return {**row, "prompt": cut}


def prompt_budget(hp: Any) -> int:
    """Prompt tokens left beside a generated completion: min(maxPromptLength, maxLength - maxCompletionLength)
    (validation keeps it >= 4)."""
    budget = hp.max_length - hp.max_completion_length
    return min(budget, hp.max_prompt_length) if hp.max_prompt_length else budget


def fit_prompt(tokenizer: Any, row: dict[str, Any], budget: int, report: FitReport) -> dict[str, Any]:
    """A prompt-only row (the policy writes the answer) with its prompt cut from the left to `budget` tokens."""
    prompt = row.get("prompt")
    if prompt is None:
        return row
    report.rows += 1
    prompt_len = len(_ids(tokenizer, prompt_text(tokenizer, prompt)))
    report.longest_prompt = max(report.longest_prompt, prompt_len)
    if prompt_len <= budget:  # fits beside the completion
        return row
    report.cut += 1
    return {**row, "prompt": cut_prompt(tokenizer, prompt, budget)}


def fit_dataset(dataset: Any, tokenizer: Any, hp: Any, split: str, *, generated: bool = False,
                keep_answer_end: bool = False) -> Any:
    """The dataset with every prompt fitted (rows without a prompt and an answer are returned as they are).
    `generated`: the rows are prompts the policy answers (DataKind.PROMPT_ONLY): cut to prompt_budget(hp).
    `keep_answer_end` (reward models): answers that still do not fit are cut from their start (fit_answers)."""
    if dataset is None or "prompt" not in dataset.column_names:
        return dataset
    report = FitReport()
    if generated:
        budget = prompt_budget(hp)
        rows = [fit_prompt(tokenizer, dict(row), budget, report) for row in dataset]
        why = f"maxLength ({hp.max_length}) - maxCompletionLength ({hp.max_completion_length})" + \
            (f" / maxPromptLength ({hp.max_prompt_length})" if hp.max_prompt_length else "")
    elif any(k in dataset.column_names for k in ANSWERS):
        rows = [fit_row(tokenizer, dict(row), hp.max_length, hp.max_prompt_length, report) for row in dataset]
        why = f"maxLength ({hp.max_length})" + \
            (f" / maxPromptLength ({hp.max_prompt_length})" if hp.max_prompt_length else "") + " and keep the answers"
        if keep_answer_end:
            rows = [fit_answers(tokenizer, row, hp.max_length, report) for row in rows]
    else:
        return dataset
    if report.cut:
        log.warning("%s: the prompts of %d of %d rows were cut from the left to fit hyperparameters.%s; the longest "
                    "prompt has %d tokens", split, report.cut, report.rows, why, report.longest_prompt)
    if report.answers_cut:
        log.warning("%s: %d answers were cut from their start to fit hyperparameters.maxLength (%d) beside their "
                    "prompt (their end, where a reward model reads its score, kept)", split, report.answers_cut,
                    hp.max_length)
    if not (report.cut or report.answers_cut):
        return dataset
    from datasets import Dataset
    return Dataset.from_list(rows)
