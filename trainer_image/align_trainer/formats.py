"""Row formats -> TRL dataset types -> what each algorithm trains on. Pure functions over dicts.

A `Record` is one row as one of TRL's dataset types (language_modeling, prompt_only, prompt_completion,
preference, unpaired, stepwise); values are strings ("standard") or lists of {role, content} messages
("conversational"). Every error is a DataError naming the row (file:line) and the field.
"""

from __future__ import annotations

from typing import Any

from .contracts import DataKind
from .errors import DataError
from .records import Record, _bool_label, _fail  # noqa: F401  (Record: formats.Record for the loaders)

ROLES = ("system", "developer", "user", "assistant", "tool")
TEXT_KEYS = ("prompt", "completion", "chosen", "rejected", "text")
RECORD_TYPES = ("language_modeling", "prompt_only", "prompt_completion", "preference", "unpaired", "stepwise")
#: Per-answer rewards a preference row may carry (rpo's reward gap = chosen_reward - rejected_reward).
REWARD_KEYS = ("chosen_reward", "rejected_reward")
_TRL_KEYS = {"text", "messages", "prompt", "completion", "chosen", "rejected", "label", "completions", "labels"}


def _content(value: Any, where: str, path: str) -> str:
    """OpenAI content: a string or a list of {type: text, text} parts (joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text", "output_text") \
                    or not isinstance(part.get("text"), str):
                raise _fail(where, f"{path}[{i}]", "only text content parts {type: text, text: ...} are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise _fail(where, path, f"must be a string or a list of text parts, got {type(value).__name__}")


def messages(value: Any, where: str, path: str, *, weights: bool = False) -> list[dict[str, Any]]:
    """A validated, normalised message list. With `weights`, each message gets an int `weight`
    (OpenAI: 0/1 on assistant messages, default 1; always 0 for other roles)."""
    if not isinstance(value, list) or not value:
        raise _fail(where, path, "must be a non-empty list of messages {role, content}")
    out = []
    for i, msg in enumerate(value):
        here = f"{path}[{i}]"
        if not isinstance(msg, dict):
            raise _fail(where, here, f"must be an object {{role, content}}, got {type(msg).__name__}")
        role = msg.get("role")
        if role not in ROLES:
            raise _fail(where, f"{here}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if msg.get("tool_calls") or msg.get("function_call"):
            raise _fail(where, f"{here}.tool_calls", "tool calls are not supported by the trainer yet")
        if "content" not in msg or msg["content"] is None:
            raise _fail(where, f"{here}.content", "is required")
        item: dict[str, Any] = {"role": "system" if role == "developer" else role,
                                "content": _content(msg["content"], where, f"{here}.content")}
        if "weight" in msg:
            if role != "assistant":
                raise _fail(where, f"{here}.weight", "weight is only allowed on assistant messages")
            if msg["weight"] not in (0, 1) or isinstance(msg["weight"], bool):
                raise _fail(where, f"{here}.weight", f"must be 0 or 1, got {msg['weight']!r}")
        if weights:
            item["weight"] = int(msg.get("weight", 1)) if role == "assistant" else 0
        out.append(item)
    return out


def _text_or_messages(value: Any, where: str, path: str) -> str | list[dict[str, Any]]:
    if isinstance(value, str):
        if not value:
            raise _fail(where, path, "must not be empty")
        return value
    if isinstance(value, list):
        return messages(value, where, path)
    raise _fail(where, path, f"must be a string or a list of messages, got {type(value).__name__}")


# --- formats ------------------------------------------------------------------------------------------

def detect_format(row: dict[str, Any], where: str) -> str:
    """Guess a row's format from its keys (spec.data.*.format: auto)."""
    from .formats_llamafactory import detect
    llamafactory = detect(row)  # before openai-chat: a sharegpt KTO row is {messages, label}
    if llamafactory:
        return llamafactory
    if "input" in row and ("preferred_output" in row or "non_preferred_output" in row):
        return "openai-preference"
    if "response_1" in row and "response_2" in row:
        return "ranked-pair"
    if "messages" in row and isinstance(row["messages"], list):
        has_answer = any(isinstance(m, dict) and m.get("role") == "assistant" for m in row["messages"])
        return "openai-chat" if has_answer or set(row) <= {"messages", "tools", "parallel_tool_calls"} \
            else "openai-rft"
    if _TRL_KEYS & set(row):
        return "trl"
    raise DataError(f"{where}: cannot detect the format from the fields {sorted(row)}; set data.*.format "
                    "or map columns with data.*.fields (e.g. {prompt: question, chosen: good, rejected: bad})")


def _openai_chat(row: dict[str, Any], where: str) -> Record:
    if row.get("tools"):
        raise _fail(where, "tools", "function-calling examples are not supported by the trainer yet")
    msgs = messages(row.get("messages"), where, "messages", weights=True)
    for index, msg in enumerate(msgs):
        if msg["role"] == "assistant" and msg["weight"] and not msg["content"].strip():
            raise _fail(where, f"messages[{index}].content", "an assistant turn to learn from is empty: fill it, "
                        "or set weight: 0 on it")
    if not any(m["role"] == "assistant" and m["weight"] for m in msgs):
        raise _fail(where, "messages", "needs at least one assistant message with weight 1 to learn from")
    return Record("language_modeling", {"messages": msgs}, where)


def _openai_preference(row: dict[str, Any], where: str) -> Record:
    inp = row.get("input")
    if not isinstance(inp, dict):
        raise _fail(where, "input", "must be an object {messages: [...]}")
    if inp.get("tools"):
        raise _fail(where, "input.tools", "function-calling examples are not supported by the trainer yet")
    prompt = messages(inp.get("messages"), where, "input.messages")
    out = {"prompt": prompt}
    for key, name in (("preferred_output", "chosen"), ("non_preferred_output", "rejected")):
        msgs = messages(row.get(key), where, key)
        if msgs[-1]["role"] != "assistant":
            raise _fail(where, f"{key}[{len(msgs) - 1}].role", "the output must end with an assistant message")
        out[name] = msgs
    # rpo reads reward gaps from these two optional keys (align_trainer.reward_gaps); nothing else is kept
    extra = {k: row[k] for k in REWARD_KEYS if k in row}
    return Record("preference", out, where, extra)


def _openai_rft(row: dict[str, Any], where: str) -> Record:
    msgs = messages(row.get("messages"), where, "messages")
    extra = {k: v for k, v in row.items() if k != "messages"}
    return Record("prompt_only", {"prompt": msgs}, where, extra)


_RANKED_PREFERENCE = {1: 1, 2: 2, "1": 1, "2": 2, "response_1": 1, "response_2": 2, "a": 1, "b": 2}


def _ranked_pair(row: dict[str, Any], where: str) -> Record | None:
    """{question|prompt, response_1, response_2, overall_response|preference}; 1/2 names the better one,
    ties (0, "tie") carry no preference and are skipped."""
    prompt_key = "prompt" if "prompt" in row else "question"
    pref_key = "preference" if "preference" in row else "overall_response"
    if pref_key not in row:
        raise _fail(where, "overall_response", "is required (1 or 2: which response is better)")
    choice = row[pref_key]
    if isinstance(choice, str):
        choice = choice.strip().lower()
    if choice in (0, "0", "tie", "equal"):
        return None
    if choice not in _RANKED_PREFERENCE or isinstance(choice, bool):
        raise _fail(where, pref_key, f"must be 1 or 2 (or 'tie'), got {row[pref_key]!r}")
    better = _RANKED_PREFERENCE[choice]
    prompt = _text_or_messages(row.get(prompt_key), where, prompt_key)
    first = _text_or_messages(row.get("response_1"), where, "response_1")
    second = _text_or_messages(row.get("response_2"), where, "response_2")
    chosen, rejected = (first, second) if better == 1 else (second, first)
    extra = {k: v for k, v in row.items() if k not in (prompt_key, pref_key, "response_1", "response_2")}
    return Record("preference", {"prompt": prompt, "chosen": chosen, "rejected": rejected}, where, extra)


def _trl(row: dict[str, Any], where: str) -> Record:
    keys = set(row)
    extra = {k: v for k, v in row.items() if k not in _TRL_KEYS}
    if {"chosen", "rejected"} <= keys:
        data = {k: _text_or_messages(row[k], where, k) for k in ("chosen", "rejected")}
        if "prompt" in row:
            data["prompt"] = _text_or_messages(row["prompt"], where, "prompt")
        else:  # implicit prompt: the longest shared prefix of chosen and rejected
            from trl.data_utils import extract_prompt
            data = extract_prompt(data)
            if not data["prompt"]:
                raise _fail(where, "prompt", "missing, and chosen/rejected share no prefix to use as the prompt")
        return Record("preference", data, where, extra)
    if {"completions", "labels"} <= keys:
        steps, labels = row["completions"], row["labels"]
        if not isinstance(steps, list) or not isinstance(labels, list) or len(steps) != len(labels):
            raise _fail(where, "labels", "stepwise rows need lists completions and labels of equal length")
        data = {"prompt": _text_or_messages(row.get("prompt"), where, "prompt"), "completions": steps,
                "labels": [_bool_label(v, where, f"labels[{i}]") for i, v in enumerate(labels)]}
        return Record("stepwise", data, where, extra)
    if "label" in keys:
        data = {"prompt": _text_or_messages(row.get("prompt"), where, "prompt"),
                "completion": _text_or_messages(row.get("completion"), where, "completion"),
                "label": _bool_label(row["label"], where, "label")}
        return Record("unpaired", data, where, extra)
    if "completion" in keys:
        data = {"prompt": _text_or_messages(row.get("prompt"), where, "prompt"),
                "completion": _text_or_messages(row["completion"], where, "completion")}
        return Record("prompt_completion", data, where, extra)
    if "prompt" in keys:
        return Record("prompt_only", {"prompt": _text_or_messages(row["prompt"], where, "prompt")}, where, extra)
    if "messages" in keys:
        return Record("language_modeling", {"messages": messages(row["messages"], where, "messages", weights=True)},
                      where, extra)
    if "text" in keys:
        return Record("language_modeling", {"text": _text_or_messages(row["text"], where, "text")}, where, extra)
    raise DataError(f"{where}: not a TRL dataset row: expected text, messages, prompt[/completion[/label]], "
                    f"[prompt/]chosen/rejected or prompt/completions/labels; got {sorted(keys)}")


PARSERS = {"openai-chat": _openai_chat, "openai-preference": _openai_preference, "openai-rft": _openai_rft,
           "ranked-pair": _ranked_pair, "trl": _trl}


def parse_row(fmt: str, row: dict[str, Any], where: str, *, tags: dict[str, str] | None = None) -> Record | None:
    """One row of `fmt` as a Record (None: the row carries no training signal, e.g. a ranked-pair tie).
    `tags`: spec.data.*.tags, for sharegpt rows."""
    if fmt in ("alpaca", "sharegpt"):
        from . import formats_llamafactory
        return formats_llamafactory.sharegpt(row, where, tags) if fmt == "sharegpt" else formats_llamafactory.alpaca(row, where)
    return PARSERS[fmt](row, where)


# --- conversions to what an algorithm trains on --------------------------------------------------------

def _check_same_style(record: Record, keys: tuple[str, ...]) -> None:
    """TRL needs every text field of a row to be either all strings or all message lists."""
    styles = {k: isinstance(record.data[k], list) for k in keys if k in record.data}
    if len(set(styles.values())) > 1:
        conv = [k for k, v in styles.items() if v]
        raise DataError(f"{record.where}: fields {', '.join(sorted(styles))} mix plain strings and message lists "
                        f"({', '.join(conv)} are messages); use one style per row")


def _strip_trailing_answer(msgs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """Prompt messages (no trailing assistant turn) and the trailing answer, for prompt-only use."""
    answer = None
    while msgs and msgs[-1]["role"] == "assistant":
        answer = msgs[-1]["content"] if answer is None else answer
        msgs = msgs[:-1]
    return [{"role": m["role"], "content": m["content"]} for m in msgs], answer


def _to_sft(r: Record) -> list[dict[str, Any]]:
    if r.type == "language_modeling":
        return [dict(r.data)]
    if r.type == "prompt_completion":
        return [dict(r.data)]
    if r.type == "preference":
        return [{"prompt": r.data["prompt"], "completion": r.data["chosen"]}]
    if r.type == "unpaired":
        return [{"prompt": r.data["prompt"], "completion": r.data["completion"]}] if r.data["label"] else []
    raise DataError(f"{r.where}: a {r.type} row has no target text for SFT; use messages, prompt/completion "
                    "or preference rows")


def _to_preference(r: Record) -> list[dict[str, Any]]:
    if r.type == "preference":  # with the pair's rewards when it has them (rpo's reward gap)
        return [{**{k: r.data[k] for k in ("prompt", "chosen", "rejected")},
                 **{k: r.extra[k] for k in REWARD_KEYS if k in r.extra}}]
    raise DataError(f"{r.where}: pairwise algorithms need preference pairs (prompt, chosen, rejected or "
                    f"openai-preference); this row is {r.type}" +
                    (" (unpaired labels: use algorithm kto)" if r.type == "unpaired" else ""))


def _to_unpaired(r: Record) -> list[dict[str, Any]]:
    if r.type == "unpaired":
        return [{k: r.data[k] for k in ("prompt", "completion", "label")}]
    if r.type == "preference":  # one pair = one desirable + one undesirable example (KTO paper, sec. 4)
        return [{"prompt": r.data["prompt"], "completion": r.data["chosen"], "label": True},
                {"prompt": r.data["prompt"], "completion": r.data["rejected"], "label": False}]
    if r.type == "stepwise":
        return [{"prompt": r.data["prompt"], "completion": "".join(map(str, r.data["completions"])),
                 "label": all(r.data["labels"])}]
    raise DataError(f"{r.where}: kto needs unpaired rows (prompt, completion, label) or preference pairs; "
                    f"this row is {r.type}")


def _to_prompt_only(r: Record) -> list[dict[str, Any]]:
    extra = dict(r.extra)
    if r.type == "language_modeling":
        if "messages" not in r.data:
            raise DataError(f"{r.where}: a plain text row has no prompt; online algorithms need prompts")
        prompt, answer = _strip_trailing_answer(r.data["messages"])
        if not prompt:
            raise DataError(f"{r.where}: field messages: no prompt messages before the assistant answer")
        if answer is not None:
            extra.setdefault("answer", answer)
        return [{"prompt": prompt, **extra}]
    if r.type in ("prompt_completion", "unpaired") and isinstance(r.data.get("completion"), (str, list)):
        completion = r.data["completion"]
        if r.type == "prompt_completion":  # a reference answer graders may compare with
            extra.setdefault("answer", completion if isinstance(completion, str) else completion[-1]["content"])
            # kept whole: reft warms up on it (reasoning + answer) while `answer` may hold the golden answer alone
            extra.setdefault("completion", completion)
    return [{"prompt": r.data["prompt"], **extra}]


CONVERTERS = {DataKind.SFT: _to_sft, DataKind.PREFERENCE: _to_preference, DataKind.UNPAIRED: _to_unpaired,
              DataKind.PROMPT_ONLY: _to_prompt_only}


def convert(records: list[Record], kind: DataKind) -> list[dict[str, Any]]:
    """Rows of `kind` (see contracts.DataKind) from parsed records."""
    rows = []
    for record in records:
        _check_same_style(record, ("prompt", "completion", "chosen", "rejected"))
        rows.extend(CONVERTERS[kind](record))
    return rows
