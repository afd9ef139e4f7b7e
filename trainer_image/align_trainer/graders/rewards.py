"""Graders as reward functions: for TRL's GRPO/RLOO trainers and for our own loops (PPO, online DPO, TPO).

Metrics, as TRL names them: `rewards/<grader>/mean` (TRL's own, from the function's name), plus what TRL
cannot know: `rewards/<sub-grader>/mean` for each multi sub-grader, `graders/errors` (failed gradings in the
batch) and `graders/error_rate`. A failed grading scores 0 and is counted; the run goes on unless the grader
fails too often (spec.runPolicy.maxGraderErrorRate, see health.py).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Callable, Sequence

from ..contracts import ITEM_AS_WRITTEN
from . import Grader, GradeResult, GraderUnavailable, build

log = logging.getLogger(__name__)

#: Keyword arguments TRL passes to reward functions that are not dataset columns.
TRL_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "environments", "completion_ids", "prompts",
                        "completions", "prompt", "completion"})


def completion_text(completion: Any) -> str:
    """A TRL completion as the answer text: standard (str) or conversational (assistant messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict)
                       and m.get("role", "assistant") == "assistant")
    return str(completion)


def batch_metrics(grader: Grader, results: Sequence[GradeResult]) -> dict[str, float]:
    """Per-sub-grader means and error counts for one batch of results."""
    out: dict[str, float] = {}
    if results:
        errors = sum(r.failed for r in results)
        out["graders/errors"] = float(errors)
        out["graders/error_rate"] = errors / len(results)
        names = {k for r in results for k in r.sub_rewards}
        for name in sorted(names):
            values = [r.sub_rewards[name] for r in results if name in r.sub_rewards]
            out[f"rewards/{name}/mean"] = sum(values) / len(values)
    return out


def log_failures(grader: Grader, results: Sequence[GradeResult], limit: int = 3) -> None:
    failed = [r for r in results if r.failed]
    for r in failed[:limit]:
        log.warning("grader %s failed on a sample (reward 0): %s %s", grader.name,
                    sorted(k for k, v in r.errors.items() if v and not k.endswith("details")),
                    str(r.details or r.errors)[:300])


class GraderReward:
    """A TRL reward function backed by a grader. Its `__name__` (the grader's name) names TRL's metric."""

    def __init__(self, grader: Grader):
        self.grader = grader
        self.__name__ = grader.name
        self.last: list[GradeResult] = []

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        columns = {k: v for k, v in kwargs.items() if k not in TRL_KWARGS and isinstance(v, (list, tuple))}
        items = [with_messages({k: v[i] for k, v in columns.items()}, prompts[i]) for i in range(len(completions))]
        answers = [completion_text(c) for c in completions]
        results = self.grader.grade_batch(items, answers, prompts=list(prompts))
        self.last = results
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        if log_metric is not None:
            for name, value in batch_metrics(self.grader, results).items():
                log_metric(name, value)
        log_failures(self.grader, results)
        return [r.reward if math.isfinite(r.reward) else 0.0 for r in results]


def grader_reward(ctx: Any, *, judge: Any = None, reward_model: Any = None) -> GraderReward:
    """The job's spec.grader as a TRL reward function; a grader that cannot run here is a ConfigError."""
    from align_trainer.errors import ConfigError
    if ctx.spec.grader is None:
        raise ConfigError(f"algorithm {ctx.spec.algorithm.value} needs spec.grader")
    try:
        grader = build(ctx.spec.grader, context=ctx, judge=judge, reward_model=reward_model)
    except GraderUnavailable as exc:
        raise ConfigError(f"spec.grader: {exc}") from None
    from .health import GraderHealth
    grader.health = GraderHealth.from_spec(ctx.spec.run_policy, warn=getattr(getattr(ctx, "metrics", None), "warn", None))
    if hasattr(ctx, "grader_health"):  # checkpoints carry its window (runstate.py)
        ctx.grader_health = grader.health
    return GraderReward(grader)


def with_messages(item: dict[str, Any], prompt: Any) -> dict[str, Any]:
    """OpenAI RFT items are whole rows, `messages` included: put a conversational prompt back under that name.
    Nested fields return as the user wrote them (contracts.ITEM_AS_WRITTEN), not with the table's None-filled keys."""
    written = item.pop(ITEM_AS_WRITTEN, None)
    if isinstance(written, str):
        item.update(json.loads(written))
    if isinstance(prompt, list) and "messages" not in item:
        item["messages"] = prompt
    return item


def row_items(dataset_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dataset rows as grader items: every column but the prompt, which returns as `messages` when it is a
    conversation (so {{item.messages}} works as with OpenAI)."""
    return [with_messages({k: v for k, v in row.items() if k != "prompt"}, row.get("prompt")) for row in dataset_rows]
