"""SFT packing through our trainer's SFT path: several examples share a row, yet none attends to another.

The batch comes from the SFTTrainer that `algorithms/sft.py` builds for a manifest with `packing: true`,
and the forward pass gets exactly the keys the trainer feeds the model (minus labels), so a wiring that
stops packing, or packs without per-example position ids (neighbours attending to each other), fails here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from align_trainer.algorithms import sft
from align_trainer.main import build_context, load_job

from .trainer_support import manifest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


def packed_trainer(tmp_path: Path, packing: bool, **hp: Any) -> Any:
    config = manifest(tmp_path, "packing", "sft", "sft.openai.jsonl",
                      hp={"packing": packing, "batchSize": 2, "maxLength": 256, "maxSteps": 1, **hp})
    ctx = build_context(load_job(config), manifest=config, output=tmp_path / "out", data_kind=sft.DATA,
                        metrics_port=None)
    return sft.build_trainer(ctx)


def logits(model: Any, batch: dict[str, Any]) -> Any:
    import torch
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def test_packed_examples_do_not_attend_to_their_neighbours(tmp_path: Path) -> None:
    import torch
    trainer = packed_trainer(tmp_path, packing=True)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch, "packed rows must be padding-free (position ids, no attention mask)"
    positions = batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist()
    assert len(starts) >= 2, f"row 0 should hold several examples, got starts {starts}"
    first, second = starts[0], starts[1]
    model = trainer.model.eval()
    before = logits(model, batch)
    changed = {k: v.clone() if hasattr(v, "clone") else v for k, v in batch.items()}
    # rewrite the first example's tokens (same length, so the packing layout is unchanged)
    ids = changed["input_ids"][0, first:second]
    changed["input_ids"][0, first:second] = torch.where(ids == 65, 66, 65)
    after = logits(model, changed)
    assert not torch.allclose(before[0, first:second], after[0, first:second]), "the edit must reach the model"
    # the neighbours that follow see none of it
    torch.testing.assert_close(after[0, second:], before[0, second:], rtol=0, atol=1e-5)


def test_packed_rows_are_micro_batches_of_one_without_flash_attention(tmp_path: Path) -> None:
    """sdpa/eager attend over the whole flattened batch: one packed row per micro-batch, the optimizer batch
    kept by accumulation (batchSize 2 -> 1 x 2)."""
    args = packed_trainer(tmp_path, packing=True).args
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 2)
    hp = type("HP", (), {"packing": True, "padding_free": False, "batch_size": 4, "gradient_accumulation_steps": 2})()
    assert sft.micro_batching(hp, "flash_attention_2") == {}
    assert sft.micro_batching(hp, "sdpa")["gradient_accumulation_steps"] == 8


def test_without_packing_rows_are_single_padded_examples(tmp_path: Path) -> None:
    """The control: the same manifest with packing off gives one example per row and an attention mask, so the
    test above is about the packing setting and not a property of every batch."""
    trainer = packed_trainer(tmp_path, packing=False)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" in batch and "position_ids" not in batch


def padding_free_trainer(tmp_path: Path, attention: str | None) -> Any:
    """An SFT trainer with paddingFree (batchSize 3, maxLength 96) built for `attention`. The model itself always
    loads with this machine's sdpa: only what build_trainer decides from the attention differs."""
    config = manifest(tmp_path, "padding-free", "sft", "sft.openai.jsonl",
                      hp={"paddingFree": True, "batchSize": 3, "maxLength": 96, "maxSteps": 1})
    ctx = build_context(load_job(config), manifest=config, output=tmp_path / "out", data_kind=sft.DATA,
                        metrics_port=None)
    if attention is not None:
        ctx.device = dataclasses.replace(ctx.device, attn_implementation=attention)
    return sft.build_trainer(ctx)


def test_padding_free_examples_do_not_attend_to_their_batch_neighbour(tmp_path: Path) -> None:
    """paddingFree as it runs with flash attention: a micro-batch's examples become one row (no pad token, no
    attention mask), each with its own position ids; rewriting one example leaves its neighbours' logits
    unchanged. Run here with sdpa, which (unlike flash attention's varlen kernels) relies on the mask that
    transformers builds from the position ids alone."""
    import torch
    trainer = padding_free_trainer(tmp_path, "flash_attention_2")
    assert trainer.args.max_length == 96 and not trainer.args.packing
    assert trainer.args.per_device_train_batch_size == 3
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1, "one flattened row, no padding"
    positions = batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist() + [positions.numel()]
    assert len(starts) == 4, f"the row should hold the micro-batch's 3 examples, got starts {starts[:-1]}"
    lengths = [b - a for a, b in zip(starts, starts[1:])]
    assert max(lengths) <= 96, f"examples are still truncated to maxLength: {lengths}"
    model = trainer.model.eval()
    before = logits(model, batch)
    first, second, end = starts[0], starts[1], starts[2]
    for edit, other in (((first, second), (second, None)), ((second, end), (first, second))):
        changed = {k: v.clone() if hasattr(v, "clone") else v for k, v in batch.items()}
        ids = changed["input_ids"][0, edit[0]:edit[1]]
        changed["input_ids"][0, edit[0]:edit[1]] = torch.where(ids == 65, 66, 65)
        after = logits(model, changed)
        assert not torch.allclose(before[0, edit[0]:edit[1]], after[0, edit[0]:edit[1]]), "the edit must reach the model"
        # its neighbour (after it, and before it) sees none of it
        torch.testing.assert_close(after[0, other[0]:other[1]], before[0, other[0]:other[1]], rtol=0, atol=1e-5)


def test_padding_free_without_flash_attention_is_one_example_per_micro_batch(tmp_path: Path) -> None:
    """sdpa/eager would attend over the whole flattened row: one example per micro-batch instead (no padding to
    remove), the optimizer batch kept by accumulation (batchSize 3 -> 1 x 3)."""
    trainer = padding_free_trainer(tmp_path, None)
    assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == (1, 3)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1 and bool(batch["attention_mask"].all()), "one example, no pad token"
