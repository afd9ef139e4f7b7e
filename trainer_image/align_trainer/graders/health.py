"""Unhealthy graders fail the job: a reward that is 0 because the grader crashed is not a reward.

During training a failed grading scores 0 and the run goes on (one flaky judge answer must not cost a GPU
run). But when the grader itself fails (see ANSWER_FLAGS) on more than spec.runPolicy.maxGraderErrorRate of the gradings of the last
spec.runPolicy.graderErrorWindow grading batches (one batch per training step), the policy is learning from
noise: training stops with GraderFailing (a permanent exit code) and the grader's first error messages, which
the operator copies into status.lastError.

No learning signal, said early: when every prompt's samples get one reward (zero variance within each group;
with one sample per prompt, across the batch) in each of the first spec.runPolicy.noLearningSignalSteps grading
batches, group-relative advantages are all zero and a reward-to-go has nothing to rank: the run learns nothing
while looking healthy. Then a warning quoting a few answers beside what the grader compared them with goes to the
log, the metric align_trainer_warning{reason="NoLearningSignal"} (the operator turns it into an event and the
condition LearningSignal=False), or, with failOnNoLearningSignal, the run stops with NoLearningSignal.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from align_api.constants import Reason

from ..errors import GraderFailing, NoLearningSignal
from .core import GradeResult

log = logging.getLogger(__name__)

#: How many of the grader's first error messages the failure quotes.
FIRST_ERRORS = 3
#: How many sampled answers the no-learning-signal warning quotes, and how many characters of each.
QUOTED_SAMPLES, QUOTED_CHARS = 3, 80
#: Rewards closer than this count as identical.
FLAT = 1e-9
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


def _group_key(item: dict[str, Any], prompt: Any = None) -> str:
    """Samples of one prompt share their prompt and item (the dataset row)."""
    return json.dumps([prompt, item], sort_keys=True, default=str)


def flat_groups(rewards: Sequence[float], items: Sequence[dict[str, Any]], prompts: Sequence[Any] | None = None) -> bool:
    """True when no group of samples carries a reward difference: every prompt's samples share one reward
    (one sample per prompt: the whole batch shares one)."""
    groups: dict[str, list[float]] = {}
    for i, (reward, item) in enumerate(zip(rewards, items)):
        groups.setdefault(_group_key(item, prompts[i] if prompts else None), []).append(reward)
    spreads = [max(g) - min(g) for g in groups.values() if len(g) > 1] or [max(rewards) - min(rewards)]
    return all(spread <= FLAT for spread in spreads)


def _quote(text: str) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= QUOTED_CHARS else text[:QUOTED_CHARS] + "...")


@dataclass
class GraderHealth:
    """Error rate of the last `window` grading batches; raises GraderFailing above `max_error_rate`. Also
    watches the first `signal_steps` batches for a reward with no variance (see the module docstring)."""

    max_error_rate: float
    window: int
    signal_steps: int = 0
    fail_on_no_signal: bool = False
    #: warn(reason, message): the metrics sink's warning (gauge, status.json); None logs only
    warn: Callable[[str, str], None] | None = None
    batches: deque = field(default_factory=deque)
    first_errors: list[str] = field(default_factory=list)
    watched: int = 0           #: grading batches looked at for signal so far (stops at signal_steps)
    samples: list[str] = field(default_factory=list)  #: quoted answers of the flat batches

    @classmethod
    def from_spec(cls, run_policy: Any, warn: Callable[[str, str], None] | None = None) -> "GraderHealth":
        return cls(run_policy.max_grader_error_rate, run_policy.grader_error_window,
                   run_policy.no_learning_signal_steps, run_policy.fail_on_no_learning_signal, warn)

    def observe(self, grader: str, results: Sequence[GradeResult], items: Sequence[dict[str, Any]] = (),
                answers: Sequence[str] = (), compared_with: Callable[[dict[str, Any]], str] | None = None,
                prompts: Sequence[Any] | None = None) -> None:
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
        if self.watched < self.signal_steps and results and len(items) == len(results):
            self._watch_signal(grader, results, items, answers, compared_with, prompts)

    def _watch_signal(self, grader: str, results: Sequence[GradeResult], items: Sequence[dict[str, Any]],
                      answers: Sequence[str], compared_with: Callable[[dict[str, Any]], str] | None,
                      prompts: Sequence[Any] | None) -> None:
        rewards = [r.reward if math.isfinite(r.reward) else 0.0 for r in results]
        if not flat_groups(rewards, items, prompts if prompts is not None and len(prompts) == len(items) else None):
            self.watched = self.signal_steps  # signal seen: stop watching
            return
        self.watched += 1
        for i in range(min(len(answers), QUOTED_SAMPLES - len(self.samples))):
            against = compared_with(items[i]) if compared_with is not None else ""
            self.samples.append(f"{_quote(answers[i])}" + (f" vs {_quote(against)}" if against else "")
                                + f" -> {rewards[i]:.4g}")
        if self.watched < self.signal_steps:
            return
        values = sorted({round(r, 6) for r in rewards})
        message = (f"no learning signal: grader {grader!r} gave every prompt's samples the same reward in each of the "
                   f"first {self.signal_steps} grading batches (rewards {', '.join(f'{v:g}' for v in values[:5])}); "
                   f"advantages are zero and training learns nothing. Sampled answers vs what the grader compared "
                   f"them with: " + "; ".join(self.samples)
                   + ". Check the grader on these answers with `alignctl grade` (an exact match against a letter "
                   "when the model writes a sentence scores 0 everywhere)")
        if self.fail_on_no_signal:
            raise NoLearningSignal(message + " (spec.runPolicy.failOnNoLearningSignal)")
        log.warning("%s", message)
        if self.warn is not None:
            self.warn(Reason.NO_LEARNING_SIGNAL, message)


__all__ = ["GraderHealth", "describe", "flat_groups"]
