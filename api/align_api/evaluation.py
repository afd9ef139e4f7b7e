"""spec.evaluation: did the alignment work? Policy vs reference, scored, with gates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from . import formula
from .common import SpecModel
from .data import Dataset
from .graders import Grader

#: Names a gate expression may use (filled into status.evaluation by the trainer).
GATE_METRICS = ("winRate", "lossRate", "tieRate", "rewardDelta", "rewardDeltaLow", "rewardDeltaHigh",
                "policyReward", "referenceReward", "lengthRatio", "lengthRewardCorrelation", "accuracy",
                "meanMargin", "calibrationError")


class Generation(SpecModel):
    max_new_tokens: int = Field(default=32, ge=1, le=8192, description="Tokens generated per answer.")
    temperature: float = Field(default=0.0, ge=0, le=5, description="0 = greedy.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling.")


class Evaluation(SpecModel):
    """Evaluate the trained policy against its reference (or a reward model on held-out pairs)."""

    enabled: bool | None = Field(default=None, description="Run the evaluation; default: on for RL and preference algorithms.")
    prompts: Dataset | None = Field(default=None, description="Evaluation prompts; default: the eval split.")
    scorer: Literal["grader", "reward_model", "judge"] = Field(
        default="grader", description="What scores answers: the job's grader, `grader` below, or a judge grader below.")
    grader: Grader | None = Field(default=None, description="Grader or judge used for evaluation (default: spec.grader).")
    samples: int = Field(default=64, ge=1, le=100_000, description="Prompts to evaluate.")
    generation: Generation = Field(default_factory=Generation, description="Generation settings (same seeds for both models).")
    after_training: bool = Field(default=True, description="Evaluate when training ends.")
    at_checkpoints: bool = Field(default=False, description="Also evaluate at each checkpoint.")
    gates: list[str] = Field(default_factory=list, description="Conditions such as 'winRate >= 0.55'; a failed gate fails the job "
                             "with EvaluationGateFailed and the adapter is not published. Names: " + ", ".join(GATE_METRICS) + ".")

    @field_validator("gates")
    @classmethod
    def _gates(cls, gates: list[str]) -> list[str]:
        for gate in gates:
            try:
                tree = formula.parse(gate, set(GATE_METRICS), comparison=True)
            except formula.FormulaError as exc:
                raise ValueError(f"gate {gate!r}: {exc}") from None
            import ast
            if not isinstance(tree.body, ast.Compare):
                raise ValueError(f"gate {gate!r} must be a comparison, e.g. 'winRate >= 0.55'")
        return gates


# --- how evaluation numbers travel from the trainer to status.evaluation (issue 8) ---------------------
#: The trainer exports every status.evaluation number as a gauge `align_trainer_eval_<snake_case>{job}`.
EVAL_GAUGE_PREFIX = "eval_"


def eval_gauge_suffix(name: str) -> str:
    """winRate -> eval_win_rate (the gauge is align_trainer_eval_win_rate)."""
    return EVAL_GAUGE_PREFIX + "".join("_" + c.lower() if c.isupper() else c for c in name)


def evaluation_from_metrics(values: dict[str, float]) -> dict[str, float | None]:
    """status.evaluation from scraped `align_trainer_*` values keyed without the prefix (eval_win_rate -> winRate);
    NaN/inf become null."""
    import math
    out: dict[str, float | None] = {}
    for key, value in values.items():
        if key.startswith(EVAL_GAUGE_PREFIX):
            head, *rest = key[len(EVAL_GAUGE_PREFIX):].split("_")
            out[head + "".join(part.capitalize() for part in rest)] = value if math.isfinite(value) else None
    return out
