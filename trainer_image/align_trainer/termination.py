"""The success termination message cut to the kubelet's limit: valid JSON however much is cut.

The kubelet keeps at most 4096 bytes of /dev/termination-log, cut at a byte: a message over the limit would
reach the operator as broken JSON and lose everything. So the message is cut here, a part at a time, least
important first (CUTS), and never the artifacts, which exist nowhere else once the pod is gone:
the kept checkpoints (the operator also scrapes them), then the warnings' messages down to their first
WARNING_SHORT characters (what went wrong and the first sampled answers), the final metrics, the evaluation's
numbers, and last the warnings' messages down to WARNING_MIN characters. A warning itself (its reason) is never
dropped: a run that ended before the operator's next scrape has no other way to report it (docs/operations.md).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping

MAX_TERMINATION_MESSAGE = 4096  # kubelet keeps at most 4096 bytes
#: A warning's message at most (the warning gauge's label is cut to the same, so a scrape reads the same text).
WARNING_CHARS = 1024
WARNING_SHORT, WARNING_MIN = 400, 120
CUT_MARK = " [cut: the trainer's log has the whole message]"


def dumps(doc: Mapping[str, Any]) -> str:
    # UTF-8 as is: \uXXXX escapes would make sampled non-ASCII answers six bytes a character
    return json.dumps(doc, ensure_ascii=False)


def size(doc: Mapping[str, Any]) -> int:
    return len(dumps(doc).encode("utf-8"))


def warning_records(warnings: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The run's warnings ({reason, message}, as metrics.Metrics.warn recorded them), the first of each reason,
    messages cut as the warning gauge cuts them."""
    out: dict[str, dict[str, str]] = {}
    for warning in warnings:
        reason = str(warning.get("reason") or "")
        if reason and reason not in out:
            out[reason] = {"reason": reason, "message": str(warning.get("message") or "")[:WARNING_CHARS]}
    return list(out.values())


def _shorten(chars: int) -> Callable[[dict[str, Any]], None]:
    def cut(doc: dict[str, Any]) -> None:
        for warning in doc.get("warnings") or []:
            if len(warning["message"]) > chars:
                warning["message"] = warning["message"][:chars - len(CUT_MARK)] + CUT_MARK
    return cut


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key, None)  # type: ignore[func-returns-value]


#: What goes when the message is too long, least important first.
CUTS: tuple[Callable[[dict[str, Any]], None], ...] = (
    _drop("checkpointIndex"), _shorten(WARNING_SHORT), _drop("finalMetrics"), _drop("evaluation"),
    _shorten(WARNING_MIN))


def fit(doc: dict[str, Any], limit: int = MAX_TERMINATION_MESSAGE) -> str:
    """`doc` as JSON of at most `limit` bytes where CUTS can make it so (`doc` is cut in place)."""
    for cut in CUTS:
        if size(doc) <= limit:
            break
        cut(doc)
    return dumps(doc)


__all__ = ["CUTS", "MAX_TERMINATION_MESSAGE", "WARNING_CHARS", "dumps", "fit", "warning_records"]
