"""LLaMA-Factory's dataset formats (alpaca, sharegpt) -> Records, as its `DatasetConverter`s read them.

LLaMA-Factory describes a file with a dataset_info.json entry: `formatting` (alpaca | sharegpt), `ranking` (pairs),
`columns` (which column holds what) and `tags` (sharegpt message keys and role names). Here `format:` is the
formatting, `fields:` takes the `columns` mapping unchanged ({prompt: instruction, query: input, ...}), `tags:` the
tags, and the row's shape says whether it is a conversation, a pair or a KTO example (no `ranking` switch). Every
format becomes conversational rows, so the model's own chat template renders them.

    alpaca:   {instruction, input?, output, system?, history?: [[q, a], ...]}          -> conversation
              {instruction, input?, chosen, rejected, ...}                             -> preference pair
              {instruction, input?, output, kto_tag: bool, ...}                        -> unpaired (KTO)
              {instruction, input?} (no output)                                        -> prompt
    sharegpt: {conversations: [{from: human|gpt|system, value}], system?}               -> conversation
              {conversations ending with human, chosen: {from: gpt, value}, rejected}  -> preference pair
              {conversations ending with gpt, kto_tag: bool}                            -> unpaired (KTO)

The user turn of an alpaca row is "instruction\\ninput" (empty parts left out), as in LLaMA-Factory; history answers
are trained too (LLaMA-Factory does the same). Errors name the row (file:line) and the field.
"""

from __future__ import annotations

from typing import Any

from .errors import DataError
from .records import Record, _bool_label, _fail

#: LLaMA-Factory's default column for each `columns` key (dataset_info.json README); `label` is what its KTO demo
#: (and TRL) call the KTO tag, so it is read when no kto_tag column is there.
ALPACA_DEFAULTS = {"prompt": "instruction", "query": "input", "response": "output"}
SHAREGPT_DEFAULTS = {"messages": "conversations"}
KTO_COLUMNS = ("kto_tag", "label")
#: sharegpt tag styles when spec.data.*.tags is not set: LLaMA-Factory's default, and the OpenAI-style one its KTO
#: demo and many hub sets use. Chosen per message by which role key it has.
TAG_STYLES = ({"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
              {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"})
TAG_DEFAULTS = {"system_tag": "system", "observation_tag": "observation", "function_tag": "function_call"}
_OWN_COLUMNS = {"prompt", "instruction", "query", "input", "response", "output", "system", "history", "tools",
                "chosen", "rejected", "kto_tag", "label", "messages", "conversations"}


def _column(row: dict[str, Any], key: str, defaults: dict[str, str]) -> tuple[str, Any]:
    """(column name, value) of a `columns` key: the canonical name after `fields` renaming, else the default."""
    if key in row:
        return key, row[key]
    column = defaults.get(key, key)
    return column, row.get(column)


def _optional_text(row: dict[str, Any], column: str, where: str) -> str:
    value = row.get(column)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(where, column, f"must be a string, got {type(value).__name__}")
    return value


def _kto_label(row: dict[str, Any], where: str) -> bool | None:
    for column in KTO_COLUMNS:
        if column in row and row[column] is not None:
            return _bool_label(row[column], where, column)
    return None


def _no_tools(row: dict[str, Any], where: str) -> None:
    if row.get("tools"):
        raise _fail(where, "tools", "function-calling examples are not supported by the trainer yet")


def _extra(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _OWN_COLUMNS}


def _answer(value: Any, where: str, path: str) -> list[dict[str, str]]:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, path, "must be a non-empty string (the answer)")
    return [{"role": "assistant", "content": value}]


def alpaca(row: dict[str, Any], where: str) -> Record:
    """One alpaca row (LLaMA-Factory's AlpacaDatasetConverter)."""
    _no_tools(row, where)
    instruction_col, instruction = _column(row, "prompt", ALPACA_DEFAULTS)
    query_col, query = _column(row, "query", ALPACA_DEFAULTS)
    parts = []
    for column, value in ((instruction_col, instruction), (query_col, query)):
        if value is not None and not isinstance(value, str):
            raise _fail(where, column, f"must be a string, got {type(value).__name__}")
        if value:
            parts.append(value)
    if not parts:
        raise _fail(where, instruction_col, f"is required: the instruction (with {query_col}, the user turn)")
    prompt: list[dict[str, str]] = []
    system = _optional_text(row, "system", where)
    if system:
        prompt.append({"role": "system", "content": system})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise _fail(where, "history", "must be a list of [instruction, answer] pairs")
    for i, turn in enumerate(history):
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise _fail(where, f"history[{i}]", "must be a pair [instruction, answer] of strings")
        prompt += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    prompt.append({"role": "user", "content": "\n".join(parts)})
    extra = _extra(row)
    if "chosen" in row or "rejected" in row:
        return Record("preference", {"prompt": prompt, "chosen": _answer(row.get("chosen"), where, "chosen"),
                                     "rejected": _answer(row.get("rejected"), where, "rejected")}, where, extra)
    response_col, response = _column(row, "response", ALPACA_DEFAULTS)
    label = _kto_label(row, where)
    if label is not None:
        return Record("unpaired", {"prompt": prompt, "completion": _answer(response, where, response_col),
                                   "label": label}, where, extra)
    if response is None:  # LLaMA-Factory's "unsupervised" rows: prompts for online algorithms
        return Record("prompt_only", {"prompt": prompt}, where, extra)
    msgs = [{**m, "weight": 1 if m["role"] == "assistant" else 0} for m in prompt + _answer(response, where, response_col)]
    return Record("language_modeling", {"messages": msgs}, where, extra)


def _tags_for(message: dict[str, Any], tags: dict[str, str] | None) -> dict[str, str]:
    """The spec's tags over LLaMA-Factory's defaults; without tags, the style whose role key the message has."""
    if tags:
        return {**TAG_DEFAULTS, **TAG_STYLES[0], **tags}
    return {**TAG_DEFAULTS, **(TAG_STYLES[1] if "from" not in message and "role" in message else TAG_STYLES[0])}


def _message(message: Any, where: str, path: str, tags: dict[str, str] | None, expect: str) -> dict[str, str]:
    """One sharegpt message as {role, content}; `expect` is the role its position requires (user | assistant)."""
    if not isinstance(message, dict):
        raise _fail(where, path, f"must be an object {{from, value}}, got {type(message).__name__}")
    t = _tags_for(message, tags)
    role_key, content_key = t["role_tag"], t["content_tag"]
    if role_key not in message:
        raise _fail(where, f"{path}.{role_key}", f"is required (the role; set data.*.tags.role_tag if the messages "
                    f"use another key; this one has {', '.join(sorted(message))})")
    role = message[role_key]
    roles = {t["user_tag"]: "user", t["assistant_tag"]: "assistant"}
    if role in (t["observation_tag"], t["function_tag"]):
        raise _fail(where, f"{path}.{role_key}", f"{role!r} turns (tool calls and results) are not supported by the "
                    "trainer yet")
    if role not in roles:
        raise _fail(where, f"{path}.{role_key}", f"must be {t['user_tag']!r} or {t['assistant_tag']!r} here, got {role!r} "
                    "(set data.*.tags.user_tag / assistant_tag for other role names)")
    if roles[role] != expect:
        raise _fail(where, f"{path}.{role_key}", f"expected a {expect} turn here ({t['user_tag']!r} and "
                    f"{t['assistant_tag']!r} alternate, starting with {t['user_tag']!r}), got {role!r}")
    content = message.get(content_key)
    if not isinstance(content, str):
        raise _fail(where, f"{path}.{content_key}", f"must be a string, got {type(content).__name__}")
    return {"role": roles[role], "content": content}


def sharegpt(row: dict[str, Any], where: str, tags: dict[str, str] | None = None) -> Record:
    """One sharegpt row (LLaMA-Factory's SharegptDatasetConverter; ranking and KTO rows by their shape)."""
    _no_tools(row, where)
    column, raw = _column(row, "messages", SHAREGPT_DEFAULTS)
    if not isinstance(raw, list) or not raw:
        raise _fail(where, column, "must be a non-empty list of messages ({from, value})")
    system = _optional_text(row, "system", where)
    first = raw[0] if isinstance(raw[0], dict) else {}
    t0 = _tags_for(first, tags)
    start = 0
    if first.get(t0["role_tag"]) == t0["system_tag"]:  # a leading system message overrides the system column
        content = first.get(t0["content_tag"])
        if not isinstance(content, str):
            raise _fail(where, f"{column}[0].{t0['content_tag']}", "must be a string")
        system, start = content, 1
    msgs = [_message(m, where, f"{column}[{i}]", tags, "user" if (i - start) % 2 == 0 else "assistant")
            for i, m in enumerate(raw[start:], start)]
    if not msgs:
        raise _fail(where, column, "holds only a system message")
    head = [{"role": "system", "content": system}] if system else []
    extra = _extra(row)
    if "chosen" in row or "rejected" in row:
        if msgs[-1]["role"] != "user":
            raise _fail(where, f"{column}[{len(raw) - 1}]", "a preference row's conversation must end with a user "
                        "turn (the answers are in chosen and rejected)")
        answers = {}
        for key in ("chosen", "rejected"):
            value = row.get(key)
            message = (_message(value, where, key, tags, "assistant") if isinstance(value, dict)
                       else {"role": "assistant", "content": value})
            answers[key] = _answer(message["content"], where, key)
        return Record("preference", {"prompt": head + msgs, **answers}, where, extra)
    label = _kto_label(row, where)
    if label is not None:
        if msgs[-1]["role"] != "assistant":
            raise _fail(where, f"{column}[{len(raw) - 1}]", "a KTO row's conversation must end with the answer")
        return Record("unpaired", {"prompt": head + msgs[:-1],
                                   "completion": _answer(msgs[-1]["content"], where, f"{column}[{len(raw) - 1}]"),
                                   "label": label}, where, extra)
    if msgs[-1]["role"] == "user":  # no answer: a prompt for online algorithms
        return Record("prompt_only", {"prompt": head + msgs}, where, extra)
    for i, m in enumerate(msgs):
        if m["role"] == "assistant" and not m["content"].strip():
            raise _fail(where, f"{column}[{i + start}]", "an assistant turn to learn from is empty")
    weighted = [{**m, "weight": 1 if m["role"] == "assistant" else 0} for m in head + msgs]
    return Record("language_modeling", {"messages": weighted}, where, extra)


#: `fields` keys only LLaMA-Factory's formats read: mapping one of them says the data is alpaca or sharegpt.
MAPPED_ONLY = frozenset({"query", "response", "history", "system", "tools", "kto_tag"})


def detect_mapped(fields: dict[str, str] | None, row: dict[str, Any]) -> str | None:
    """With format auto, a `fields` mapping copied from a dataset_info.json `columns` entry decides: after renaming
    {prompt: question, response: answer} a row looks like TRL's prompt-only one, but TRL reads no `response`."""
    if not fields or not MAPPED_ONLY & set(fields):
        return None
    return "sharegpt" if isinstance(row.get("messages"), list) else "alpaca"


def detect(row: dict[str, Any]) -> str | None:
    """alpaca or sharegpt when the row's keys say so unambiguously (spec format: auto), else None."""
    conversation = row.get("conversations")
    if isinstance(conversation, list) and conversation and isinstance(conversation[0], dict):
        return "sharegpt"
    messages = row.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        if "from" in messages[0] or any(isinstance(row.get(k), bool) for k in KTO_COLUMNS) \
                or isinstance(row.get("chosen"), dict):
            return "sharegpt"
    if "instruction" in row and isinstance(row["instruction"], str) \
            and ({"output", "chosen", "input"} & set(row) or len(row) == 1):
        return "alpaca"
    return None
