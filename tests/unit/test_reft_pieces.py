"""ReFT's pure pieces: which text the warm-up trains on, which prompts the before/after probes use."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from align_trainer.algorithms import reft
from align_trainer.errors import DataError


def test_warm_up_trains_on_the_reference_completion_not_the_golden_answer() -> None:
    rows = [{"prompt": "xyz c", "completion": "C2", "answer": "2"},   # reasoning + answer, golden answer apart
            {"prompt": "xyz d", "answer": "3"},                        # OpenAI RFT row: the answer is the target
            {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}]}]
    assert reft.warmup_rows(rows) == [{"prompt": "xyz c", "completion": "C2"}, {"prompt": "xyz d", "completion": "3"},
                                      {"prompt": [{"role": "user", "content": "q"}],
                                       "completion": [{"role": "assistant", "content": "a"}]}]
    with pytest.raises(DataError, match="row 1: field answer"):
        reft.warmup_rows([{"prompt": "p"}])


def test_probes_use_the_held_out_split_when_there_is_one() -> None:
    train, held_out = [{"prompt": f"t{i}"} for i in range(5)], [{"prompt": f"e{i}"} for i in range(3)]
    rows, is_held_out = reft.probe_rows(SimpleNamespace(train_dataset=train, eval_dataset=held_out), limit=2)
    assert (rows, is_held_out) == (held_out[:2], True)
    rows, is_held_out = reft.probe_rows(SimpleNamespace(train_dataset=train, eval_dataset=None), limit=2)
    assert (rows, is_held_out) == (train[:2], False)
