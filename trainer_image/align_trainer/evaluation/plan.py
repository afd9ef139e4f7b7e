"""Whether and what a job evaluates: spec.evaluation's rule, in a module that imports nothing heavy.

The entry point asks `plan` before it imports the runner (generation, scoring, graders, charts): a job that
does not evaluate never pays for those imports. `preflight.evaluates` uses the same default (DEFAULT_ON).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from align_api.algorithms import ONLINE_ALGORITHMS, PREFERENCE_ALGORITHMS
from align_api.constants import Algorithm
from align_api.evaluation import Evaluation

from ..errors import ConfigError

log = logging.getLogger("align_trainer.evaluation")

#: Evaluated by default (spec.evaluation.enabled unset): the RL and preference algorithms, and reward models.
DEFAULT_ON = frozenset(PREFERENCE_ALGORITHMS | ONLINE_ALGORITHMS | {Algorithm.REWARD})


@dataclass(frozen=True)
class Plan:
    kind: str                 #: "policy" or "reward_model"
    spec: Evaluation
    grader: Any = None        #: grader spec for policy evaluation


def plan(ctx: Any) -> Plan | None:
    """What to evaluate for this job, or None (with the reason logged)."""
    spec, algo = ctx.spec, Algorithm(ctx.spec.algorithm)
    evaluation = spec.evaluation or Evaluation()
    enabled = evaluation.enabled if evaluation.enabled is not None else algo in DEFAULT_ON
    if not enabled or not (evaluation.after_training or evaluation.at_checkpoints or evaluation.gates):
        return None
    if algo == Algorithm.REWARD:
        return Plan("reward_model", evaluation)
    grader = evaluation.grader or spec.grader
    if grader is None:
        if evaluation.enabled or evaluation.gates:
            raise ConfigError("spec.evaluation needs a grader to score answers: set evaluation.grader or spec.grader")
        log.info("evaluation skipped: no grader to score answers (set spec.evaluation.grader)")
        return None
    if evaluation.scorer == "reward_model" and grader.type != "reward_model":
        raise ConfigError(f"evaluation.scorer is reward_model but the grader is {grader.type!r}")
    if evaluation.scorer == "judge" and grader.type not in ("score_model", "label_model", "multi"):
        raise ConfigError(f"evaluation.scorer is judge but the grader is {grader.type!r} (not a model judge)")
    return Plan("policy", evaluation, grader)
