"""Unhealthy graders fail the job: a reward that is 0 because the grader crashed is not a reward.

During training a failed grading scores 0 and the run goes on (one flaky judge answer must not cost a GPU
run). But when the grader itself fails (see ANSWER_FLAGS) on more than spec.runPolicy.maxGraderErrorRate of the gradings of the last
spec.runPolicy.graderErrorWindow grading batches (one batch per training step), the policy is learning from
noise: training stops with GraderFailing (a permanent exit code) and the grader's first error messages, which
the operator copies into status.lastError.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import GraderFailing
from .core import GradeResult

#: How many of the grader's first error messages the failure quotes.
FIRST_ERRORS = 3
#: Flags that blame the answer, not the grader: an answer that is not the JSON a grader reads is a legitimate
#: reward of 0 (OpenAI RFT scores it so too, and the policy learns to answer in JSON). Only the other flags
#: (missing item fields, crashing python graders, unreachable judges, ...) mean the grader is broken.
ANSWER_FLAGS = frozenset({"sample_parse_error", "truncated_observation_error"})


def grader_failed(result: GradeResult) -> bool:
    """The grader itself failed on this sample (not merely the answer being unparseable)."""
    return any(bool(v) for k, v in result.errors.items() if k not in ANSWER_FLAGS and not k.endswith(
        ("details", "_type")))


def describe(result: GradeResult) -> str:
    """One failed grading as a short line: the error flags that are set and the details."""
    flags = sorted(k for k, v in result.errors.items() if v and not k.endswith(("details", "_type")))
    detail = result.details.get("error") if isinstance(result.details, dict) else None
    detail = detail or result.errors.get("python_grader_runtime_error_details") or \
        result.errors.get("model_grader_server_error_details") or result.details or ""
    text = str(detail).strip()
    if "\n" in text:  # a traceback: its last line says what went wrong
        text = text.splitlines()[-1].strip()
    return f"{', '.join(flags) or 'error'}: {text[:300]}".rstrip(": ")


@dataclass
class GraderHealth:
    """Error rate of the last `window` grading batches; raises GraderFailing above `max_error_rate`."""

    max_error_rate: float
    window: int
    batches: deque = field(default_factory=deque)
    first_errors: list[str] = field(default_factory=list)

    @classmethod
    def from_spec(cls, run_policy: Any) -> "GraderHealth":
        return cls(run_policy.max_grader_error_rate, run_policy.grader_error_window)

    def observe(self, grader: str, results: Sequence[GradeResult]) -> None:
        failed = [r for r in results if grader_failed(r)]
        for result in failed:
            message = describe(result)
            if len(self.first_errors) < FIRST_ERRORS and message not in self.first_errors:
                self.first_errors.append(message)
        self.batches.append((len(failed), len(results)))
        while len(self.batches) > self.window:
            self.batches.popleft()
        errors, total = sum(b[0] for b in self.batches), sum(b[1] for b in self.batches)
        if total and errors / total > self.max_error_rate:
            raise GraderFailing(
                f"grader {grader!r} failed on {errors} of {total} gradings in the last {len(self.batches)} "
                f"batch(es) ({errors / total:.0%} > spec.runPolicy.maxGraderErrorRate {self.max_error_rate:.0%}); "
                f"first errors: " + " | ".join(self.first_errors)
                + " -- check the grader against a row with `alignctl grade` (or `alignctl validate --preflight`)")


__all__ = ["GraderHealth", "describe"]
