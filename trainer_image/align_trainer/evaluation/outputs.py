"""Write an evaluation to disk: evaluation.json (status-ready numbers), report.md and the PNG charts.

Layout in the job's output directory (checkpoint evaluations go to `evaluation/step-<N>/`, same files)::

    evaluation.json   {"kind", "status": {winRate, ...}, "passed", "gates", "details", "samples", ...}
    report.md
    *.png
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..storage import write_json_atomic, write_text_atomic

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
    unscored: int = 0              #: samples the scorer could not score (grader errors); left out of the numbers

    @property
    def scored_nothing(self) -> bool:
        """Every sample failed to score: the numbers measure nothing, so the evaluation did not pass."""
        samples = self.metrics.get("samples")
        return bool(samples) and self.unscored >= int(samples or 0)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


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


def _write(out: Path, kind: str, name: str, rows: Sequence[Any], evaluation: PolicyEvaluation | RewardModelEvaluation,
           gates: Sequence[str], context: dict[str, Any], charts: Callable[..., list[Path]] | None,
           report: Callable[..., str]) -> EvaluationOutcome:
    out.mkdir(parents=True, exist_ok=True)
    outcome = EvaluationOutcome(kind, evaluation.metrics, check_gates(gates, evaluation.metrics), out,
                                unscored=int(evaluation.details.get("unscored") or 0))
    if charts is not None:
        outcome.charts = charts(rows, evaluation.details, evaluation.metrics, out)
    outcome.report = out / REPORT_FILE
    write_text_atomic(outcome.report, report(name, evaluation, outcome.gates, outcome.charts, out, context))
    write_json_atomic(out / EVALUATION_FILE, _document(outcome, evaluation.details, context,
                                                       [row.to_dict() for row in rows]))
    return outcome


def write_policy_evaluation(out: Path, name: str, samples: Sequence[Sample], evaluation: PolicyEvaluation,
                            gates: Sequence[str], context: dict[str, Any], *, charts: bool = True) -> EvaluationOutcome:
    draw = None
    if charts:
        from .charts import policy_charts as draw  # matplotlib: imported only when drawing
    return _write(out, "policy", name, samples, evaluation, gates, context, draw, policy_report)


def write_reward_model_evaluation(out: Path, name: str, pairs: Sequence[Pair], evaluation: RewardModelEvaluation,
                                  gates: Sequence[str], context: dict[str, Any], *, charts: bool = True) -> EvaluationOutcome:
    draw = None
    if charts:
        from .charts import reward_model_charts as draw
    return _write(out, "reward_model", name, pairs, evaluation, gates, context, draw, reward_model_report)


def read_evaluation(directory: Path) -> dict[str, Any]:
    """evaluation.json of an output directory (or of the directory holding it)."""
    path = directory / EVALUATION_FILE if directory.is_dir() else directory
    return json.loads(path.read_text())
