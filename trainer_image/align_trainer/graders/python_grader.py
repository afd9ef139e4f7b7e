"""`python` graders: the user's `grade(sample, item) -> float`, run in the grader jail's pool (see jail.py).

A call that raises, hangs, exits, runs out of memory or returns something other than a finite number
scores 0 with the error recorded (OpenAI's python_grader_runtime_error / unresponsive_reward_error /
python_grader_server_error flags) and counted in `JailPool.stats`.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from align_api.graders import PythonGrader

from .core import GradeResult, Scorer
from .jail import CallResult, JailPool, get_pool


def to_result(call: CallResult) -> GradeResult:
    # Where a kernel layer is missing, every result says what the grader could still reach (metadata.details).
    jail = {"jail_degraded": list(call.degraded)} if call.degraded else {}
    if call.error is None and call.value is not None:
        return GradeResult(call.value, execution_time=call.duration, details=jail)
    details: dict[str, Any] = {"error": call.error, "error_type": call.error_type, **jail}
    if call.logs:
        details["logs"] = call.logs
    if call.server_error:
        errors: dict[str, Any] = {"python_grader_server_error": True, "python_grader_server_error_type": call.error_type}
    elif call.error_type == "Timeout":
        errors = {"unresponsive_reward_error": True, "python_grader_runtime_error": True,
                  "python_grader_runtime_error_details": call.error}
    else:
        errors = {"python_grader_runtime_error": True, "python_grader_runtime_error_details": call.error}
    return GradeResult(0.0, errors=errors, details=details, execution_time=call.duration)


class PythonScorer(Scorer):
    type = "python"

    def __init__(self, spec: PythonGrader, *, pool: JailPool | None = None):
        self.spec, self.name, self.pass_threshold = spec, spec.name, spec.pass_threshold
        self.pool = pool or get_pool()

    def grade_batch(self, samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]) -> list[GradeResult]:
        start = time.monotonic()
        # Only the OpenAI sample fields reach untrusted code (nothing the trainer added, such as the prompt).
        public = [{k: s.get(k) for k in ("output_text", "output_json", "output_tools", "choices")} for s in samples]
        results = [to_result(c) for c in self.pool.map(self.spec.source, list(zip(public, items)))]
        self._stamp(results, start)
        return results
