"""`multi` graders: named sub-graders combined by `calculate_output` (align_api.formula, never eval()).

Sub-grader scores are reported as `sub_rewards`. A failed sub-grader contributes 0 and its error flags
are carried up; a formula that yields NaN/inf (e.g. division by zero) gives reward 0 with
formula_parse_error, as OpenAI reports formula problems.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

from align_api import formula
from align_api.graders import MultiGrader

from .core import GradeResult, Scorer


class MultiScorer(Scorer):
    type = "multi"

    def __init__(self, spec: MultiGrader, children: dict[str, Scorer]):
        self.spec, self.name, self.children = spec, spec.name, children
        self.tree = formula.parse(spec.calculate_output, set(children))

    def grade_batch(self, samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]) -> list[GradeResult]:
        start = time.monotonic()
        per_child = {key: child.grade_batch(samples, items) for key, child in self.children.items()}
        out = []
        for index in range(len(samples)):
            subs = {key: per_child[key][index] for key in self.children}
            values = {key: r.reward for key, r in subs.items()}
            errors: dict[str, Any] = {}
            details: dict[str, Any] = {}
            for key, r in subs.items():
                for flag, value in r.errors.items():
                    if value and not errors.get(flag):
                        errors[flag] = value
                if r.failed:
                    details[key] = r.details or r.errors
            try:
                reward = float(formula.evaluate(self.tree, values))
            except (formula.FormulaError, ArithmeticError, ValueError, TypeError) as exc:
                reward = math.nan
                details["formula"] = str(exc)
            if not math.isfinite(reward):
                errors["formula_parse_error"] = True
                details.setdefault("formula", f"calculate_output gave {reward} for {values}")
                reward = 0.0
            sub_rewards = dict(values)
            for r in subs.values():  # nested multi graders: their own sub-rewards, flattened by name
                sub_rewards.update({k: v for k, v in r.sub_rewards.items() if k not in sub_rewards})
            out.append(GradeResult(reward, sub_rewards=sub_rewards, errors=errors, details=details))
        self._stamp(out, start)
        return out

    def close(self) -> None:
        for child in self.children.values():
            child.close()
