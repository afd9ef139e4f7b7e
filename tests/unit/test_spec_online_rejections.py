"""Every hyperparameter value an online algorithm would reject in the pod is rejected by `alignctl validate`
first (spec validation), with the field named. Enumerated per algorithm; for each case the runtime check (or
TRL's own config) is shown to reject the same value, so the two cannot drift apart silently."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from align_api.hyperparameters import Hyperparameters
from align_api.validate import ManifestError, validate_document

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}
JUDGE = {"type": "score_model", "name": "judge", "model": "m", "input": [{"role": "user", "content": "x"}]}


def job(algorithm: str, hp: dict[str, Any], grader: dict[str, Any] | None = GRADER) -> dict[str, Any]:
    spec: dict[str, Any] = {"algorithm": algorithm, "model": {"base": "builtin://tiny"},
                            "data": {"train": {"uri": "file:///d.jsonl"}}, "hyperparameters": hp}
    if grader is not None:
        spec["grader"] = grader
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"}, "spec": spec}


def check_batch_rejects(hp: dict[str, Any]) -> bool:
    from align_trainer.algorithms.grpo import check_batch
    from align_trainer.errors import ConfigError
    try:
        check_batch(Hyperparameters.model_validate(hp))
    except ConfigError:
        return True
    return False


ONLINE_DPO_TRAINER_LOSSES = ("sigmoid", "ipo")  # OnlineDPOTrainer._compute_loss: anything else raises

CASES: list[tuple[str, dict[str, Any], str, Callable[[dict[str, Any]], bool] | None]] = [
    # (algorithm, hyperparameters, field named in the error, the runtime's own rejection of the same value)
    ("grpo", {"batchSize": 6, "numGenerations": 4}, "hyperparameters.batchSize", check_batch_rejects),
    ("rloo", {"batchSize": 6, "numGenerations": 4}, "hyperparameters.batchSize", check_batch_rejects),
    ("reft", {"batchSize": 6, "numGenerations": 4}, "hyperparameters.batchSize", check_batch_rejects),
    ("grpo", {"lossType": "sigmoid"}, "hyperparameters.lossType", None),
    ("grpo", {"lossType": "luspo"}, "hyperparameters.lossType", None),   # needs sequence-level ratios we do not expose
    ("online-dpo", {"lossType": "hinge"}, "hyperparameters.lossType",
     lambda hp: hp["lossType"] not in ONLINE_DPO_TRAINER_LOSSES),
    ("online-dpo", {"lossType": "robust"}, "hyperparameters.lossType",
     lambda hp: hp["lossType"] not in ONLINE_DPO_TRAINER_LOSSES),
    ("reft", {"rlStage": "ppo", "scaleRewards": "batch"}, "hyperparameters.scaleRewards", None),
    ("reft", {"rlStage": "grpo", "vfCoef": 0.5}, "hyperparameters.vfCoef", None),
    ("ppo", {"scaleRewards": "batch"}, "hyperparameters.scaleRewards", None),
    ("rloo", {"lossType": "dapo"}, "hyperparameters.lossType", None),
    ("tpo", {"lossType": "dapo"}, "hyperparameters.lossType", None),
    ("ppo", {"klHorizon": 0}, "hyperparameters.klHorizon", None),
]


@pytest.mark.parametrize(("algorithm", "hp", "field", "runtime"), CASES,
                         ids=[f"{a}-{'-'.join(h)}" for a, h, _, _ in CASES])
def test_validate_rejects_what_the_trainer_would(algorithm: str, hp: dict[str, Any], field: str,
                                                 runtime: Callable[[dict[str, Any]], bool] | None) -> None:
    with pytest.raises(ManifestError) as caught:
        validate_document(job(algorithm, hp))
    assert field in str(caught.value), str(caught.value)
    if runtime is not None:
        assert runtime(hp), "the runtime accepts this value: the spec rejection would be spurious"


def test_grpo_loss_types_of_the_spec_are_trls() -> None:
    import dataclasses

    from align_api.hyperparameters import GRPO_LOSS_TYPES
    from trl import GRPOConfig
    for loss_type in GRPO_LOSS_TYPES:
        validate_document(job("grpo", {"lossType": loss_type}))
        assert GRPOConfig(output_dir="/tmp/x", use_cpu=True, bf16=False, loss_type=loss_type).loss_type == loss_type
    assert "loss_type" in {f.name for f in dataclasses.fields(GRPOConfig)}


def test_accepted_online_settings() -> None:
    validate_document(job("grpo", {"batchSize": 8, "numGenerations": 4, "lossType": "dr_grpo"}))
    validate_document(job("reft", {"batchSize": 6, "numGenerations": 4, "rlStage": "ppo", "vfCoef": 0.5}))
    validate_document(job("online-dpo", {"lossType": "ipo"}))
    validate_document(job("rlaif", {"klHorizon": 100}, grader=JUDGE))
