"""Write an evaluation to disk: evaluation.json (status-ready numbers), report.md and the PNG charts.

Layout in the job's output directory (checkpoint evaluations go to `evaluation/step-<N>/`, same files)::

    evaluation.json   {"kind", "status": {winRate, ...}, "passed", "gates", "details", "samples", ...}
    report.md
    *.png
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .gates import GateResult, check_gates
from .policy_stats import PolicyEvaluation, Sample
from .report import policy_report, reward_model_report
from .reward_stats import Pair, RewardModelEvaluation

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.md"


@dataclass
class EvaluationOutcome:
    """What the trainer needs after an evaluation: numbers for the status, gate verdicts and file paths."""

    kind: str
    metrics: dict[str, float | None]
    gates: list[GateResult] = field(default_factory=list)
    directory: Path | None = None
    report: Path | None = None
    charts: list[Path] = field(default_factory=list)
    report_uri: str | None = None  #: where report.md was uploaded (<spec.output.uri>/evaluation/report.md)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write then rename, so a reader (the operator, `alignctl report`) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, allow_nan=False)
        handle.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the report is for other users and sidecars too
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _document(outcome: EvaluationOutcome, details: dict[str, Any], context: dict[str, Any],
              rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = outcome.directory or Path(".")
    return {
        "kind": outcome.kind,
        "context": context,
        "status": outcome.metrics,
        "passed": outcome.passed,
        "gates": [g.to_dict() for g in outcome.gates],
        "details": details,
        "report": REPORT_FILE,
        "charts": [p.relative_to(out).as_posix() for p in outcome.charts],
        "samples": rows,
    }


def write_policy_evaluation(out: Path, name: str, samples: Sequence[Sample], evaluation: PolicyEvaluation,
                            gates: Sequence[str], context: dict[str, Any], *, charts: bool = True) -> EvaluationOutcome:
    out.mkdir(parents=True, exist_ok=True)
    outcome = EvaluationOutcome("policy", evaluation.metrics, check_gates(gates, evaluation.metrics), out)
    if charts:
        from . import charts as charts_mod  # matplotlib: imported only when drawing
        outcome.charts = charts_mod.policy_charts(samples, evaluation.details, evaluation.metrics, out)
    outcome.report = out / REPORT_FILE
    _write_text_atomic(outcome.report, policy_report(name, evaluation, outcome.gates, outcome.charts, out, context))
    write_json_atomic(out / EVALUATION_FILE, _document(outcome, evaluation.details, context,
                                                       [s.to_dict() for s in samples]))
    return outcome


def write_reward_model_evaluation(out: Path, name: str, pairs: Sequence[Pair], evaluation: RewardModelEvaluation,
                                  gates: Sequence[str], context: dict[str, Any], *, charts: bool = True) -> EvaluationOutcome:
    out.mkdir(parents=True, exist_ok=True)
    outcome = EvaluationOutcome("reward_model", evaluation.metrics, check_gates(gates, evaluation.metrics), out)
    if charts:
        from . import charts as charts_mod
        outcome.charts = charts_mod.reward_model_charts(pairs, evaluation.details, evaluation.metrics, out)
    outcome.report = out / REPORT_FILE
    _write_text_atomic(outcome.report, reward_model_report(name, evaluation, outcome.gates, outcome.charts, out, context))
    write_json_atomic(out / EVALUATION_FILE, _document(outcome, evaluation.details, context,
                                                       [p.to_dict() for p in pairs]))
    return outcome


def read_evaluation(directory: Path) -> dict[str, Any]:
    """evaluation.json of an output directory (or of the directory holding it)."""
    path = directory / EVALUATION_FILE if directory.is_dir() else directory
    return json.loads(path.read_text())
