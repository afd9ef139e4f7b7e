"""The generation paths against an unbatched greedy reference: `online.generate` (the rollouts of ppo, reft,
rlaif and tpo) and `evaluation.generate.generate` (policy and reference answers of the evaluation).

The reference is as naive as possible: one prompt at a time, no padding, no KV cache, the argmax of a full
forward pass per new token, stopping at EOS. The batched path (left padding, one prefill, KV cache, per-row
EOS) must give the same tokens, the same completion mask and the same texts, for prompts of different lengths.
"""

from __future__ import annotations

from typing import Any

import pytest

from align_api.evaluation import Generation
from align_trainer import builtin, online
from align_trainer.evaluation import generate as evaluate

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]

PROMPTS = [[{"role": "user", "content": "Hi"}],
           [{"role": "user", "content": "Tell me a much longer story about a candle and a cloud, please."}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe bread."}],
           "plain text prompt"]
NEW = 12


def reference(model: Any, ids: list[int], eos: set[int]) -> list[int]:
    import torch
    out: list[int] = []
    with torch.no_grad():
        for _ in range(NEW):
            token = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(token)
            if token in eos:
                break
    return out


@pytest.fixture(scope="module")
def model_and_tokenizer() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = builtin.materialize("tiny")
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_batched_greedy_rollouts_equal_the_unbatched_reference(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    texts = [online.prompt_text(tokenizer, p) for p in PROMPTS]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(e) for e in encoded}) == len(encoded), "prompt lengths must differ (left padding is tested)"
    free = [reference(model, ids, set()) for ids in encoded]
    # Make EOS a token that the reference emits mid-way in one row: that row must stop there, the others not
    tokenizer = tokenizer.__class__.from_pretrained(builtin.materialize("tiny"))
    stop = free[1][4]
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(stop)
    model.generation_config.eos_token_id = stop
    try:
        expected = [reference(model, ids, {stop}) for ids in encoded]
        assert any(len(e) < NEW for e in expected) and any(len(e) == NEW for e in expected)
        rollout = online.generate(model, tokenizer, texts, max_new_tokens=NEW, temperature=0.0)
        # the evaluation's path (evaluation/generate.py: policy vs reference answers) batches the same way
        answers = evaluate.generate(model, tokenizer, PROMPTS, Generation(max_new_tokens=NEW, temperature=0.0),
                                    seed=0, batch_size=len(PROMPTS))
    finally:
        model.generation_config.eos_token_id = 260
    completion = rollout.input_ids[:, rollout.prompt_len:]
    for row, want in enumerate(expected):
        got = completion[row][rollout.completion_mask[row].bool()].tolist()
        assert got == want, f"row {row}: batched {got} != reference {want}"
        assert rollout.texts[row] == tokenizer.decode(want, skip_special_tokens=True)
        # left padding: the prompt ends right before the completion, the padding is masked
        prompt = rollout.input_ids[row, :rollout.prompt_len]
        pad = rollout.prompt_len - len(encoded[row])
        assert prompt[pad:].tolist() == encoded[row] and rollout.attention_mask[row, :pad].sum() == 0
    assert int(rollout.completion_mask.sum()) == sum(len(e) for e in expected)
    # evaluation answers exclude the EOS itself
    assert [a.text for a in answers] == [tokenizer.decode([t for t in e if t != stop], skip_special_tokens=True)
                                         for e in expected]
    assert [a.length for a in answers] == [len([t for t in e if t != stop]) for e in expected]


def test_eos_ids_include_the_models_declared_end_of_turn(model_and_tokenizer: tuple[Any, Any]) -> None:
    model, tokenizer = model_and_tokenizer
    config = model.generation_config
    config.eos_token_id = [260, 258]
    try:
        assert online.eos_ids(model, tokenizer) == [tokenizer.eos_token_id, 258]
    finally:
        config.eos_token_id = 260
