"""Reward gaps r(x, y_w) - r(x, y_l) of preference pairs, for reward-aware preference optimization (algorithm: rpo).

Where they come from, in order:
  1. the data: every row carries `chosen_reward` and `rejected_reward` (TRL-style rows, or OpenAI preference rows
     with the two extra keys), e.g. scores a reward model or human raters gave when the pairs were built;
  2. spec.grader: each pair's chosen and rejected answers are graded once (a reward_model grader, a judge or any
     rule-based OpenAI grader).

They are computed once, before training, like precomputed reference log-probs: the gaps land in a `reward_gap`
column and, for graded gaps, in a JSON cache under the job's cache directory keyed by the pairs and the grader,
so a restarted pod does not pay the grader (a judge endpoint, a reward model forward) twice.

The gap keeps its sign: if the grader prefers the "rejected" answer, rpo pulls the implicit gap the other way.
Reward-aware PO trusts the reward over the label; the fraction of such pairs is logged as rpo/negative_gaps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

CHOSEN, REJECTED, GAP = "chosen_reward", "rejected_reward", "reward_gap"


def gaps_from_columns(rows: Sequence[dict[str, Any]], where: str) -> list[float] | None:
    """chosen_reward - rejected_reward of every row; None when the data carry no reward columns at all."""
    if not rows or (CHOSEN not in rows[0] and REJECTED not in rows[0]):
        return None
    gaps = []
    for i, row in enumerate(rows):
        values = []
        for key in (CHOSEN, REJECTED):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"{where}: row {i + 1}: field {key}: must be a finite number (rpo reads the reward "
                                f"gap from chosen_reward and rejected_reward); got {value!r}")
            values.append(float(value))
        gaps.append(values[0] - values[1])
    return gaps


def cache_key(rows: Sequence[dict[str, Any]], grader_spec: Any) -> str:
    """Changes when any pair or the grader's definition changes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(grader_spec, sort_keys=True, default=str).encode())
    for row in rows:
        digest.update(json.dumps([row.get("prompt"), row.get("chosen"), row.get("rejected")], default=str).encode())
    return digest.hexdigest()[:24]


def graded_gaps(reward: Any, rows: Sequence[dict[str, Any]]) -> list[float]:
    """Grade every chosen and rejected answer once (one batch); a failed grading of either answer is an error
    (a silent 0 would become a made-up gap the policy is trained to match)."""
    from .graders.rewards import completion_text, log_failures, row_items
    items = row_items(rows)
    prompts = [row["prompt"] for row in rows]
    answers = [completion_text(row["chosen"]) for row in rows] + [completion_text(row["rejected"]) for row in rows]
    results = reward.grader.grade_batch(items + items, answers, prompts=prompts + prompts)
    log_failures(reward.grader, results)
    failed = [i % len(rows) + 1 for i, r in enumerate(results) if r.failed or not math.isfinite(r.reward)]
    if failed:
        raise ConfigError(f"rpo: spec.grader failed on {len(failed)} of {len(results)} answers (pairs "
                          f"{sorted(set(failed))[:10]}); reward gaps need every answer scored")
    n = len(rows)
    return [results[i].reward - results[n + i].reward for i in range(n)]


def reward_gaps(ctx: Any, dataset: Any, split: str, *, reward: Any = None) -> list[float]:
    """The gaps of `dataset`'s pairs: from its reward columns, else graded (cached under ctx.paths.cache_dir)."""
    rows = list(dataset)
    where = f"dataset {getattr(ctx.spec.data, split).uri if getattr(ctx.spec.data, split, None) else split}"
    from_data = gaps_from_columns(rows, where)
    if from_data is not None:
        log.info("rpo: %s reward gaps from the data's %s/%s columns", split, CHOSEN, REJECTED)
        return from_data
    if ctx.spec.grader is None:
        raise ConfigError("rpo needs reward gaps: give every pair chosen_reward and rejected_reward in the data, "
                          "or set spec.grader (e.g. a reward_model) to score chosen and rejected answers")
    grader_spec = ctx.spec.grader.model_dump(mode="json", by_alias=True, exclude_none=True)
    cache = Path(ctx.paths.cache_dir) / "rpo" / f"reward-gaps-{split}-{cache_key(rows, grader_spec)}.json"
    if cache.is_file():
        gaps = json.loads(cache.read_text())
        if len(gaps) == len(rows):
            log.info("rpo: %s reward gaps from the cache %s", split, cache)
            return [float(g) for g in gaps]
    from .graders.rewards import grader_reward
    own = reward is None
    reward = reward or grader_reward(ctx)
    try:
        gaps = graded_gaps(reward, rows)
    finally:
        if own:
            reward.grader.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(gaps))
    tmp.replace(cache)  # atomic: a pod killed mid-write leaves no half cache
    return gaps


def gap_stats(gaps: Sequence[float]) -> dict[str, float]:
    n = max(1, len(gaps))
    mean = sum(gaps) / n
    return {"rpo/reward_gap_mean": mean,
            "rpo/reward_gap_std": math.sqrt(sum((g - mean) ** 2 for g in gaps) / n),
            "rpo/negative_gaps": sum(g < 0 for g in gaps) / n}


def with_gaps(dataset: Any, gaps: Sequence[float]) -> Any:
    """The dataset with a `reward_gap` column (the reward columns, if any, dropped: the gap is what trains)."""
    drop = [c for c in (CHOSEN, REJECTED, GAP) if c in dataset.column_names]
    return dataset.remove_columns(drop).add_column(GAP, [float(g) for g in gaps])
