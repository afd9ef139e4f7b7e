"""Generation for evaluation on builtin://tiny: same seeds for policy and reference, the reference really is
the base with adapters off (or the "ref" adapter), scoring with a reward model in memory, gauges."""

from __future__ import annotations

import math
from typing import Any

import pytest

from align_api.evaluation import Generation

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


PROMPTS = ["Q: why?\nA: ", [{"role": "user", "content": "hello"}], "abc"]


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align_trainer import builtin
    path = builtin.materialize("tiny")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _policy(base: Any, std: float) -> Any:
    import copy

    import torch
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
                           adapter_name="default")
    if std:
        torch.manual_seed(0)
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(weight, std=std)
    return model


def test_untrained_policy_equals_reference_even_when_sampling(tiny: tuple[Any, Any]) -> None:
    from align_trainer.evaluation.generate import generate_pair
    base, tok = tiny
    model = _policy(base, 0.0)  # LoRA B = 0: the policy is the reference
    model.train()  # as mid-training at a checkpoint
    settings = Generation(max_new_tokens=8, temperature=1.0)
    policy, reference = generate_pair(model, tok, PROMPTS, settings, seed=3, batch_size=2)
    assert [a.text for a in policy] == [a.text for a in reference]  # same seeds, same random draws
    again, _ = generate_pair(model, tok, PROMPTS, settings, seed=3, batch_size=2)
    assert [a.text for a in again] == [a.text for a in policy]
    assert all(0 < a.length <= 8 for a in policy)
    assert model.training  # train mode restored after the evaluation


def test_reference_is_base_with_adapters_off(tiny: tuple[Any, Any]) -> None:
    import torch

    from align_trainer.evaluation.generate import as_reference, generate_pair
    base, tok = tiny
    model = _policy(base, 0.5)
    policy, reference = generate_pair(model, tok, PROMPTS, Generation(max_new_tokens=8), seed=0)
    assert [a.text for a in policy] != [a.text for a in reference]
    ids = tok(["Q: x"], return_tensors="pt")
    with torch.no_grad(), as_reference(model) as ref:
        ref_logits = ref(**ids).logits
        base_logits = base(**ids).logits
    assert torch.allclose(ref_logits, base_logits, atol=1e-5)
    assert model.active_adapter == "default"


def test_reference_adapter_is_used_when_loaded(tiny: tuple[Any, Any], tmp_path: Any) -> None:
    import torch

    from align_trainer.evaluation.generate import as_reference
    base, tok = tiny
    reference = _policy(base, 0.3)
    reference.save_pretrained(tmp_path / "ref")
    model = _policy(base, 0.5)
    model.load_adapter(str(tmp_path / "ref"), adapter_name="ref", is_trainable=False)
    ids = tok(["Q: x"], return_tensors="pt")
    with torch.no_grad():
        expected = reference(**ids).logits
        with as_reference(model) as ref:
            got = ref(**ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert model.active_adapter == "default"


def test_reward_model_scorer_and_inputs(tiny: tuple[Any, Any]) -> None:
    from transformers import AutoModelForSequenceClassification

    from align_trainer import builtin
    from align_trainer.evaluation.scoring import LoadedRewardModelScorer, reward_model_input
    _, tok = tiny
    rm = AutoModelForSequenceClassification.from_pretrained(builtin.materialize("tiny"), num_labels=1)
    rm.config.pad_token_id = tok.pad_token_id
    assert reward_model_input("Q: ", "yes", tok) == "Q: yes" + tok.eos_token
    conversational = reward_model_input([{"role": "user", "content": "hi"}], [{"role": "assistant", "content": "yo"}], tok)
    assert "hi" in conversational and "yo" in conversational
    scores = LoadedRewardModelScorer(rm, tok, batch_size=2).score([{"prompt": "Q: "}] * 3, ["a", "bb bb", "a"])
    assert all(math.isfinite(s.reward) for s in scores)
    assert scores[0].reward == pytest.approx(scores[2].reward, abs=1e-5)  # padding does not change a score


def test_gauges_on_the_trainer_registry() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from align_trainer.evaluation.runner import export_gauges, gauge_name

    class Sink:
        registry = CollectorRegistry()
        state: dict[str, Any] = {}

    sink = Sink()
    export_gauges(sink, "job-a", {"winRate": 0.75, "lengthRewardCorrelation": None})
    export_gauges(sink, "job-a", {"winRate": 0.8, "lengthRewardCorrelation": None})  # re-export: same gauges
    text = generate_latest(sink.registry).decode()
    assert 'align_trainer_eval_win_rate{job="job-a"} 0.8' in text
    assert 'align_trainer_eval_length_reward_correlation{job="job-a"} NaN' in text
    assert sink.state["evaluation"]["winRate"] == 0.8
    assert gauge_name("rewardDeltaLow") == "align_trainer_eval_reward_delta_low"
