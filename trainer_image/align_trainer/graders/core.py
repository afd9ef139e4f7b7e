"""What every grader returns, and the small interface each grader type implements.

Results mirror OpenAI's grader run endpoint (`reward`, `sub_rewards`, `metadata.errors` with the same error
flags), so a grader debugged with `alignctl grade` reads the same as one debugged against OpenAI.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

#: OpenAI's grader error flags (all present in every result, False/None unless set).
ERROR_FLAGS: dict[str, Any] = {
    "formula_parse_error": False,
    "sample_parse_error": False,
    "truncated_observation_error": False,
    "unresponsive_reward_error": False,
    "invalid_variable_error": False,
    "other_error": False,
    "python_grader_server_error": False,
    "python_grader_server_error_type": None,
    "python_grader_runtime_error": False,
    "python_grader_runtime_error_details": None,
    "model_grader_server_error": False,
    "model_grader_refusal_error": False,
    "model_grader_parse_error": False,
    "model_grader_server_error_details": None,
}


class GraderUnavailable(ValueError):
    """A grader cannot run here (missing data, model or key). Raised at build/validation time, never mid-run."""


@dataclass
class GradeResult:
    """One sample's grade. A failed grade has reward 0.0 and at least one error flag set."""

    reward: float
    name: str = "grader"
    type: str = ""
    sub_rewards: dict[str, float] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)   #: only the flags that are set (see ERROR_FLAGS)
    passed: bool | None = None                            #: reward >= pass_threshold, when the grader has one
    execution_time: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  #: e.g. a judge's raw answer, python grader logs
    label: str | None = None                              #: label_model: the judge's label

    @property
    def failed(self) -> bool:
        return any(bool(v) for v in self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI grader-run shape: reward, sub_rewards, metadata{name, type, errors, execution_time, ...}."""
        metadata: dict[str, Any] = {"name": self.name, "type": self.type, "errors": {**ERROR_FLAGS, **self.errors},
                                    "execution_time": round(self.execution_time, 6), "scores": dict(self.sub_rewards)}
        if self.passed is not None:
            metadata["passed"] = self.passed
        if self.details:
            metadata["details"] = self.details
        if self.label is not None:
            metadata["label"] = self.label
        return {"reward": self.reward, "sub_rewards": dict(self.sub_rewards), "metadata": metadata}


def failure(name: str, type_: str, **errors: Any) -> GradeResult:
    """Reward 0 with the given error flags set."""
    return GradeResult(0.0, name=name, type=type_, errors=errors)


def finite_or_failure(value: Any, name: str, type_: str, what: str, **flags: Any) -> GradeResult:
    """Accept only finite real numbers as rewards; anything else is recorded (`flags`, default other_error)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return GradeResult(0.0, name=name, type=type_, errors=flags or {"other_error": True},
                           details={"error": f"{what} gave {value!r}, not a finite number"})
    return GradeResult(float(value), name=name, type=type_)


class Scorer:
    """A built grader: `grade_batch` scores many (sample, item) cases at once (judges and reward models batch)."""

    name: str
    type: str
    pass_threshold: float | None = None

    def grade_batch(self, samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]) -> list[GradeResult]:
        start = time.monotonic()
        results = [self.grade_one(s, i) for s, i in zip(samples, items)]
        self._stamp(results, start)
        return results

    def grade_one(self, sample: dict[str, Any], item: dict[str, Any]) -> GradeResult:
        raise NotImplementedError

    def _stamp(self, results: list[GradeResult], start: float) -> None:
        elapsed = (time.monotonic() - start) / max(1, len(results))
        for result in results:
            result.name, result.type = self.name, self.type
            result.execution_time = result.execution_time or elapsed
            if self.pass_threshold is not None and not result.failed:
                result.passed = result.reward >= self.pass_threshold

    def close(self) -> None:
        """Release models, connections or processes."""
