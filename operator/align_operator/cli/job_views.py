"""How jobs look in a terminal: kubectl-style tables, `describe`, one-line status. Pure functions of the objects."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Mapping

from rich.console import Console
from rich.table import Table
from rich.text import Text

from align_operator.cli.cluster import age, human_duration
from align_operator.client import event_time, phase_of

#: Printer columns when the CRD generator is unavailable; normally read from align_api.crd (one source).
_FALLBACK_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Algorithm", "type": "string", "jsonPath": ".spec.algorithm"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.base"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress.percent"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
#: Extra columns of `-o wide`.
WIDE_COLUMNS = [
    {"name": "Step", "type": "step", "jsonPath": ".status.progress"},
    {"name": "Loss", "type": "number", "jsonPath": ".status.metrics.loss"},
    {"name": "Trainer-Job", "type": "string", "jsonPath": ".status.jobName"},
]
PHASE_STYLE = {"Succeeded": "green", "Failed": "red", "Running": "cyan", "Suspended": "yellow", "Cancelled": "yellow",
               "Queued": "magenta", "Waiting": "magenta", "Pending": "white"}


def printer_columns() -> list[dict[str, Any]]:
    """The CRD's additionalPrinterColumns, so `alignctl get` and `kubectl get aj` agree."""
    try:
        from align_api.crd import build_crd

        return list(build_crd()["spec"]["versions"][0]["additionalPrinterColumns"])
    except (ImportError, KeyError, IndexError):
        return _FALLBACK_COLUMNS


def json_path(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a simple dotted JSONPath such as .status.progress.percent (None when absent)."""
    value: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def format_number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)


def cell(obj: Mapping[str, Any], column: Mapping[str, Any], now: datetime) -> str:
    value = json_path(obj, column["jsonPath"])
    kind = column.get("type")
    if kind == "date":
        return age(value, now) if value else ""
    if column["name"] == "Progress":
        return "" if value is None else f"{float(value):.0f}%"
    if kind == "step":
        progress = value or {}
        if progress.get("step") is None:
            return ""
        total = progress.get("totalSteps")
        return f"{progress['step']}/{total}" if total else str(progress["step"])
    if kind == "number":
        return format_number(value)
    if column["name"] == "Phase" and value is None:
        return "Pending"
    return "" if value is None else str(value)


def table_rows(objs: list[Mapping[str, Any]], *, wide: bool = False, all_namespaces: bool = False,
               now: datetime | None = None) -> tuple[list[str], list[list[str]]]:
    now = now or datetime.now(timezone.utc)
    # priority > 0: only with -o wide, as kubectl shows them
    columns = [c for c in printer_columns() if wide or not c.get("priority")] + (WIDE_COLUMNS if wide else [])
    headers = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + [c["name"].upper() for c in columns]
    rows = []
    for obj in objs:
        meta = obj.get("metadata") or {}
        row = ([meta.get("namespace", "")] if all_namespaces else []) + [meta.get("name", "")]
        rows.append(row + [cell(obj, c, now) for c in columns])
    return headers, rows


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain columns separated by three spaces, as kubectl prints them (greppable, no box drawing)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def progress_bar(percent: float | None, width: int = 30) -> str:
    if percent is None:
        return ""
    filled = int(round(max(0.0, min(100.0, percent)) / 100 * width))
    return "█" * filled + "░" * (width - filled)


def progress_text(progress: Mapping[str, Any] | None) -> str:
    if not progress:
        return "not started"
    step, total = progress.get("step", 0), progress.get("totalSteps")
    percent = progress.get("percent")
    if percent is None and total:
        percent = 100.0 * step / total
    parts = [f"{progress_bar(percent)} {step}/{total} steps" if total else f"{step} steps"]
    if percent is not None:
        parts.append(f"({percent:.1f}%)")
    if progress.get("epoch") is not None:
        parts.append(f"epoch {progress['epoch']:.2f}")
    if progress.get("etaSeconds") is not None:
        parts.append(f"ETA {human_duration(progress['etaSeconds'])}")
    return "  ".join(parts)


def one_line_status(obj: Mapping[str, Any]) -> str:
    """`Running  step 12/40 (30%)  loss 0.612` -- what `wait` prints as the job moves."""
    status = obj.get("status") or {}
    parts = [phase_of(obj)]
    progress = status.get("progress") or {}
    if progress.get("step") is not None:
        total = progress.get("totalSteps")
        parts.append(f"step {progress['step']}/{total}" if total else f"step {progress['step']}")
    loss = (status.get("metrics") or {}).get("loss")
    if loss is not None:
        parts.append(f"loss {format_number(loss)}")
    return "  ".join(parts)


def trainer_container(pod: Mapping[str, Any]) -> str | None:
    names = [c.get("name") for c in ((pod.get("spec") or {}).get("containers") or [])]
    if len(names) <= 1:
        return None
    return "trainer" if "trainer" in names else names[0]


# --- describe ---------------------------------------------------------------------------------------

def _field(label: str, value: Any) -> Text:
    return Text.assemble((f"{label + ':':<14}", "bold"), str(value))


def _grid(headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 2, 0, 0))
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _data_line(dataset: Mapping[str, Any] | None) -> str:
    if not dataset:
        return "<none>"
    fmt = dataset.get("format")
    return f"{dataset.get('uri')}" + (f" ({fmt})" if fmt and fmt != "auto" else "")


def _summary_lines(obj: Mapping[str, Any], now: datetime) -> list[Text]:
    """Who the job is and where it stands: the kubectl-describe header."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = phase_of(obj)
    lines = [
        _field("Name", meta.get("name")), _field("Namespace", meta.get("namespace", "default")),
        _field("Algorithm", spec.get("algorithm")), _field("Model", (spec.get("model") or {}).get("base")),
        _field("Train data", _data_line((spec.get("data") or {}).get("train"))),
    ]
    if (spec.get("data") or {}).get("eval"):
        lines.append(_field("Eval data", _data_line(spec["data"]["eval"])))
    if spec.get("grader"):
        lines.append(_field("Grader", f"{spec['grader'].get('type')} ({spec['grader'].get('name', 'grader')})"))
    if meta.get("creationTimestamp"):
        lines.append(_field("Created", f"{meta['creationTimestamp']} ({age(meta['creationTimestamp'], now)} ago)"))
    lines.append(Text.assemble((f"{'Phase:':<14}", "bold"), (phase, PHASE_STYLE.get(phase, ""))))
    if (spec.get("runPolicy") or {}).get("suspend"):
        lines.append(_field("Suspend", "true (spec.runPolicy.suspend)"))
    for label, key in (("Trainer Job", "jobName"), ("Started", "startTime"), ("Completed", "completionTime")):
        if status.get(key):
            lines.append(_field(label, status[key]))
    lines.append(_field("Restarts", status.get("restarts", 0)))
    lines.append(_field("Progress", progress_text(status.get("progress"))))
    return lines


def _numbers(console: Console, title: str, values: Mapping[str, Any] | None) -> None:
    if values:
        console.print(Text(f"{title}:", style="bold"))
        console.print(_grid(["  NAME", "VALUE"], [[f"  {k}", format_number(v) or "n/a"] for k, v in values.items()]))


def _table_or_none(console: Console, title: str, headers: list[str], rows: list[list[str]]) -> None:
    console.print(Text(f"{title}:", style="bold"))
    console.print(_grid(headers, rows) if rows else "  <none>")


def print_describe(console: Console, obj: Mapping[str, Any], events: list[Mapping[str, Any]],
                   now: datetime | None = None) -> None:
    """kubectl-describe-like report of one AlignmentJob."""
    now = now or datetime.now(timezone.utc)
    status = obj.get("status") or {}
    for line in _summary_lines(obj, now):
        console.print(line)
    _numbers(console, "Metrics", status.get("metrics"))
    _numbers(console, "Evaluation", status.get("evaluation"))
    conditions = sorted(status.get("conditions") or [], key=lambda c: c.get("lastTransitionTime") or "")
    _table_or_none(console, "Conditions", ["  TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], [
        [f"  {c.get('type')}", c.get("status", ""), c.get("reason", ""), age(c.get("lastTransitionTime"), now),
         c.get("message", "")] for c in conditions])
    if status.get("lastError"):
        error = status["lastError"]
        console.print(Text.assemble((f"{'Last error:':<14}", "bold"), (f"{error.get('reason')}: ", "red"),
                                    str(error.get("message", ""))))
    artifacts = {k: v for k, v in (status.get("artifacts") or {}).items() if v}
    if artifacts:
        console.print(Text("Artifacts:", style="bold"))
        for key, value in artifacts.items():
            console.print(f"  {key}: {', '.join(value) if isinstance(value, list) else value}")
    _table_or_none(console, "Events", ["  TYPE", "REASON", "AGE", "FROM", "MESSAGE"], [
        [f"  {e.get('type', '')}", e.get("reason", ""),
         human_duration(now.timestamp() - event_time(e)) if event_time(e) else "<unknown>",
         (e.get("source") or {}).get("component") or e.get("reportingComponent") or "", e.get("message", "")]
        for e in events])
