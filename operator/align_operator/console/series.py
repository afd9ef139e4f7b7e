"""Training curves for the console from what the trainer already exports, nothing recorded here:

* metrics.jsonl (the job's `status.artifacts.metrics`, readable once the run published it): every logged key at
  full precision, the same file `alignctl plot` reads (`metrics_plot.read_metrics`);
* the trainer's progress lines in its pod log (`step 12/40 (30%) loss=0.61 rewards/margins=0.42 eta 8s`, one per
  logged step, `align_trainer.callbacks.progress_line`): the curves of a running job, from its first step, through
  the same `pods/log` access `alignctl logs` uses.

Both become one table aligned on the step axis, the shape uPlot draws: `steps` and, per key, one value or None per
step. JSON has no NaN: a non-finite value becomes None in the table and is counted in `nonfinite`, so the page
says "2 NaN" instead of silently dropping them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from align_operator.metrics_plot import _number

#: Keys of metrics.jsonl that are the axis or bookkeeping, not curves.
NOT_CURVES = frozenset({"step", "time", "epoch"})
_PROGRESS = re.compile(r"^step (?P<step>\d+)/(?P<total>\d+|None)(?: \(\d+%\))?(?P<rest>(?: \S+=\S+)*)(?: eta \d+s)?\s*$")
_PAIR = re.compile(r"(?P<key>[^\s=]+)=(?P<value>\S+)")


def parse_progress_line(line: str) -> tuple[int, dict[str, float]] | None:
    """(step, {key: value}) of one trainer progress line; None for any other log line."""
    match = _PROGRESS.match(line.strip())
    if match is None:
        return None
    values: dict[str, float] = {}
    for pair in _PAIR.finditer(match["rest"]):
        try:
            values[pair["key"]] = float(pair["value"])  # float() reads nan and inf as the trainer prints them
        except ValueError:
            continue
    return int(match["step"]), values


def records_from_log(lines: Iterable[str]) -> list[dict[str, Any]]:
    """metrics.jsonl-shaped records from a trainer log: a train line and an eval line of the same step merge."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in lines:
        parsed = parse_progress_line(line)
        if parsed is None:
            continue
        step, values = parsed
        if values:
            by_step.setdefault(step, {"step": step}).update(values)
    return [by_step[s] for s in sorted(by_step)]


def table(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """{steps, series: {key: [value|None per step]}, nonfinite: {key: count}} from metrics records.

    Records of the same step merge (the trainer logs train and eval values of one step separately); a later
    record of a step wins key by key (a resumed run logs the steps after its checkpoint again)."""
    by_step: dict[float, dict[str, float]] = {}
    keys: list[str] = []
    for record in records:
        step = _number(record.get("step"))
        if step is None or not math.isfinite(step):
            continue
        row = by_step.setdefault(step, {})
        for key, raw in record.items():
            value = _number(raw)
            if key in NOT_CURVES or value is None:
                continue
            if key not in row and key not in keys:
                keys.append(key)
            row[key] = value
    steps = sorted(by_step)
    series: dict[str, list[float | None]] = {}
    nonfinite: dict[str, int] = {}
    for key in keys:
        column = [by_step[s].get(key) for s in steps]
        bad = sum(1 for v in column if v is not None and not math.isfinite(v))
        if bad:
            nonfinite[key] = bad
        series[key] = [v if v is not None and math.isfinite(v) else None for v in column]
    return {"steps": [int(s) if float(s).is_integer() else s for s in steps], "series": series,
            "nonfinite": nonfinite}


def at_step(curves: Mapping[str, Any], step: int) -> dict[str, float]:
    """The values logged at `step` (what a checkpoint of that step was saved with); {} when none was."""
    steps = list(curves.get("steps") or [])
    if step not in steps:
        return {}
    i = steps.index(step)
    return {k: v[i] for k, v in (curves.get("series") or {}).items() if v[i] is not None}
