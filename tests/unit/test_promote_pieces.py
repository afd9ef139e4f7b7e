"""The pieces of promote that need no model: retention sparing promoted checkpoints (align_trainer.checkpoints),
the lookup of the checkpoint to promote (align_trainer.promote), the spec field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align_api import ManifestError, validate_document
from align_trainer import checkpoints
from align_trainer.errors import PromoteStepNotFound
from align_trainer.promote import find_checkpoint, record_promoted


def kept(directory: Path) -> list[int]:
    return [checkpoints.step_of(p) or 0 for p in checkpoints.list_checkpoints(directory)]


def test_rotation_spares_the_step_the_spec_promotes_and_the_steps_in_promoted_json(tmp_path: Path) -> None:
    ckpt = tmp_path / "out" / "checkpoints"
    for step in (2, 4, 6, 8, 10):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
    checkpoints.rotate(ckpt, 2, {4})                     # spec.promote.step: 4
    assert kept(ckpt) == [4, 8, 10]
    record_promoted(tmp_path / "out", 8)                 # promoted after training (promote.py)
    assert json.loads((tmp_path / "out" / "promoted.json").read_text()) == {"steps": [8]}
    for step in (12, 14):
        (ckpt / f"checkpoint-{step}").mkdir()
    checkpoints.rotate(ckpt, 2)                          # a later save of a run whose spec promotes nothing
    assert kept(ckpt) == [8, 12, 14]
    record_promoted(tmp_path / "out", 12)
    assert checkpoints.promoted_steps(tmp_path / "out") == {8, 12}
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_promoting_a_step_that_is_not_kept_names_the_field_and_the_kept_steps(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    with pytest.raises(PromoteStepNotFound, match=r"spec.promote.step: no checkpoint at step 3 in .*; kept: none"):
        find_checkpoint(ckpt, 3)
    for step in (2, 4):
        (ckpt / f"checkpoint-{step}").mkdir(parents=True)
    with pytest.raises(PromoteStepNotFound, match=r"no checkpoint at step 3 in .*; kept: 2, 4$"):
        find_checkpoint(ckpt, 3)
    with pytest.raises(PromoteStepNotFound, match=r"the checkpoint at step 4 is not usable \(no trainer_state.json\)"):
        find_checkpoint(ckpt, 4)


def job(**spec: object) -> dict[str, object]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "p"},
            "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "d.jsonl"}},
                     **spec}}


def test_the_promote_field_is_validated_and_needs_a_checkpoint_volume() -> None:
    assert validate_document(job(promote={"step": 4}, checkpoints={"volume": "ckpt"})).spec.promote.step == 4
    with pytest.raises(ManifestError, match=r"promote.*needs spec.checkpoints.volume"):
        validate_document(job(promote={"step": 4}))
    with pytest.raises(ManifestError, match=r"promote.step"):
        validate_document(job(promote={"step": 0}, checkpoints={"volume": "ckpt"}))
    with pytest.raises(ManifestError, match=r"promote.steps"):
        validate_document(job(promote={"steps": 4}, checkpoints={"volume": "ckpt"}))
