"""hyperparameters.paddingFree: SFT only (TRL's DPOTrainer has padding_free disabled), carried to the pod unchanged,
and wired as TRL's own padding-free collator (the batch isolation itself: tests/integration/test_perf_packing.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from align_api import ManifestError, validate_document
from align_operator.renderers import render_configmap
from align_trainer.algorithms import sft


def doc(algorithm: str, **hp: Any) -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "pf"},
            "spec": {"algorithm": algorithm, "model": {"base": "builtin://tiny"},
                     "data": {"train": {"uri": "s3://bucket/rows.jsonl"}}, "hyperparameters": hp}}


def test_padding_free_reaches_the_trainer_for_sft() -> None:
    job = validate_document(doc("sft", paddingFree=True, batchSize=4))
    trainer_doc = yaml.safe_load(render_configmap(job, "team")["data"]["job.yaml"])
    assert trainer_doc["spec"]["hyperparameters"]["paddingFree"] is True
    assert validate_document(trainer_doc).spec.hyperparameters.padding_free is True
    assert validate_document(doc("sft")).spec.hyperparameters.padding_free is False


@pytest.mark.parametrize("algorithm", ["dpo", "kto", "grpo"])
def test_padding_free_is_refused_where_trl_does_not_apply_it(algorithm: str) -> None:
    bad = doc(algorithm, paddingFree=True)
    if algorithm == "grpo":
        bad["spec"]["grader"] = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
                                 "reference": "a", "operation": "like"}
    with pytest.raises(ManifestError, match=re.escape("paddingFree") + ".*not used by algorithm"):
        validate_document(bad)


def test_the_trainer_gets_trls_padding_free_collator() -> None:
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    trainer = SimpleNamespace(data_collator=DataCollatorForLanguageModeling(pad_token_id=7, pad_to_multiple_of=None),
                              padding_free=False)
    sft.make_padding_free(trainer)
    assert trainer.padding_free is True
    assert isinstance(trainer.data_collator, DataCollatorForLanguageModeling)
    assert trainer.data_collator.padding_free and trainer.data_collator.pad_token_id == 7
    batch = trainer.data_collator([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5]] and "attention_mask" not in batch  # no pad token
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 5]]  # no example predicts from its neighbour
    assert torch.equal(batch["cu_seq_lens_q"], torch.tensor([0, 3, 5], dtype=torch.int32))
