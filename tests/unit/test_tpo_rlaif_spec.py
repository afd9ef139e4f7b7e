"""TPO's and RLAIF's spec checks: maxLength must hold the thought prompt (alignctl validate), warmupEpochs and
rpoAlpha apply to tpo, the reward-model fields of rlaif only with feedback: preference; tpo's warm-up rows are
built from the data's written thoughts."""

from __future__ import annotations

from typing import Any

import pytest

from align_api.validate import ManifestError, validate_document

JUDGE = {"type": "score_model", "name": "judge", "model": "m", "input": [{"role": "user", "content": "x"}]}


def job(hp: dict[str, Any], algorithm: str = "tpo") -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"},
            "spec": {"algorithm": algorithm, "model": {"base": "builtin://tiny"}, "grader": JUDGE,
                     "data": {"train": {"uri": "file:///d.jsonl"}}, "hyperparameters": hp}}


def test_max_length_shorter_than_the_thought_prompt_is_rejected_naming_the_field() -> None:
    with pytest.raises(ManifestError) as caught:
        validate_document(job({"maxLength": 32}))  # the default thought prompt alone has ~50 words
    assert "hyperparameters.maxLength" in str(caught.value) and "thoughtPrompt" in str(caught.value)
    with pytest.raises(ManifestError, match="hyperparameters.maxLength"):
        validate_document(job({"maxLength": 11, "thoughtPrompt": "one two three four five six seven eight nine ten {query}"}))
    validate_document(job({"maxLength": 32, "thoughtPrompt": "Think, then answer after <R>. {query}"}))
    validate_document(job({"warmupEpochs": 3, "rpoAlpha": 1.0}))


def test_warmup_rows_from_written_thoughts() -> None:
    from align_trainer.algorithms import tpo
    from align_trainer.errors import DataError
    rows = [{"prompt": [{"role": "user", "content": "Q?"}], "thought": "hm", "answer": "ab"},
            {"prompt": "P", "answer": "draft <R> final"},
            {"prompt": "no thought", "answer": "plain"}]
    assert tpo.warmup_rows(rows, "T {query}") == [
        {"prompt": [{"role": "user", "content": "T Q?"}], "completion": [{"role": "assistant", "content": "hm<R>ab"}]},
        {"prompt": "T P", "completion": "draft <R> final"}]
    with pytest.raises(DataError, match="row 1: field thought"):
        tpo.warmup_rows([{"prompt": "P", "thought": "", "answer": "a"}], "{query}")


def test_rlaif_reward_model_fields_only_with_preference_feedback() -> None:
    for field in ("rewardModelEpochs", "rewardModelLearningRate"):
        with pytest.raises(ManifestError, match=f"hyperparameters.{field}.*only with feedback: preference"):
            validate_document(job({field: 1}, "rlaif"))
    validate_document(job({"feedback": "preference", "rewardModelEpochs": 2, "rewardModelLearningRate": 0.01}, "rlaif"))
