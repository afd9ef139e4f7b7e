"""Evaluation gates: `spec.evaluation.gates` such as 'winRate >= 0.55', checked against the results.

The expressions were validated by the spec (align_api.evaluation); here they are evaluated with the same
safe evaluator (align_api.formula). A gate whose metric is missing or undefined (null/NaN) fails: an
evaluation that could not measure what the gate asks about must not pass it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from align_api import formula


@dataclass(frozen=True)
class GateResult:
    expression: str
    passed: bool
    values: dict[str, float | None]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_gate(expression: str, metrics: Mapping[str, float | None]) -> GateResult:
    names = formula.names_in(expression)
    values = {name: metrics.get(name) for name in sorted(names)}
    missing = [name for name, value in values.items() if value is None or not math.isfinite(float(value))]
    if missing:
        return GateResult(expression, False, values,
                          f"{expression}: not measured ({', '.join(missing)} unavailable for this evaluation)")
    numbers = {name: float(value) for name, value in values.items()}  # type: ignore[arg-type]
    try:
        passed = bool(formula.evaluate(expression, numbers, comparison=True))
    except (formula.FormulaError, ArithmeticError, ValueError) as exc:
        return GateResult(expression, False, values, f"{expression}: cannot be evaluated: {exc}")
    shown = ", ".join(f"{name}={value:.4g}" for name, value in numbers.items())
    return GateResult(expression, passed, values, f"{expression}: {'passed' if passed else 'FAILED'} ({shown})")


def check_gates(expressions: Sequence[str], metrics: Mapping[str, float | None]) -> list[GateResult]:
    return [check_gate(expression, metrics) for expression in expressions]


def failure_message(results: Sequence[GateResult]) -> str:
    """One line for the termination message (and so status.lastError.message)."""
    failed = [r.message for r in results if not r.passed]
    return "evaluation gate failed: " + "; ".join(failed) if failed else ""
