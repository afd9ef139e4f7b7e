"""Where the policy generates the answer, maxLength bounds prompt + completion: prompts are cut from the left to
truncation.prompt_budget(hp) = min(maxPromptLength, maxLength - maxCompletionLength) tokens (GRPO/RLOO/online DPO
datasets before TRL sees them, our loops' rows). Knobs an algorithm cannot use are refused with the reason; our PPO
loop's gradient checkpointing recomputes without changing the gradients."""

from __future__ import annotations

from typing import Any

import pytest

from align_api.hyperparameters import Hyperparameters
from align_api.validate import ManifestError, validate_document
from align_trainer import builtin
from align_trainer.chat import prompt_text
from align_trainer.truncation import fit_dataset, prompt_budget

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
          "operation": "eq"}


def job(algorithm: str, hp: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"algorithm": algorithm, "model": {"base": "builtin://tiny"},
                            "data": {"train": {"uri": "rows.jsonl"}}, "hyperparameters": hp}
    if algorithm in ("ppo", "grpo", "rloo", "online-dpo"):
        spec["grader"] = GRADER
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"}, "spec": spec}


def test_prompt_budget_leaves_room_for_the_completion() -> None:
    assert prompt_budget(Hyperparameters(max_length=100, max_completion_length=30)) == 70
    assert prompt_budget(Hyperparameters(max_length=100, max_completion_length=30, max_prompt_length=20)) == 20
    assert prompt_budget(Hyperparameters(max_length=100, max_completion_length=30, max_prompt_length=90)) == 70


@pytest.mark.parametrize("conversational", [False, True])
def test_prompt_only_rows_are_cut_from_the_left_to_the_budget(conversational: bool) -> None:
    from datasets import Dataset
    tok = builtin.build_tokenizer()
    long = "first words go " + "x" * 60 + " last words stay"
    prompt: Any = [{"role": "user", "content": long}] if conversational else long
    rows = Dataset.from_list([{"prompt": prompt, "answer": "a"}, {"prompt": [{"role": "user", "content": "hi"}]
                                                                  if conversational else "hi", "answer": "b"}])
    hp = Hyperparameters(max_length=64, max_completion_length=24)  # budget 40 tokens (bytes, template included)
    before = len(tok(prompt_text(tok, prompt), add_special_tokens=False)["input_ids"])
    fitted = fit_dataset(rows, tok, hp, "train", generated=True)
    cut, short = fitted[0], fitted[1]
    text = prompt_text(tok, cut["prompt"])
    assert before > 40 >= len(tok(text, add_special_tokens=False)["input_ids"]) > 30
    assert "last words stay" in text and "first words" not in text  # the start goes, the end stays
    assert short["prompt"] == rows[1]["prompt"] and cut["answer"] == "a"  # short rows and extra columns kept
    # not generated (answers in the rows): prompt-only rows pass through as they are
    assert fit_dataset(rows, tok, hp, "train") is rows
    # a larger maxLength leaves it whole
    assert fit_dataset(rows, tok, Hyperparameters(max_length=512, max_completion_length=24), "train",
                       generated=True)[0]["prompt"] == prompt


@pytest.mark.parametrize("algorithm,hp,message", [
    ("online-dpo", {"numGenerations": 4}, r"hyperparameters\.numGenerations: is not used by algorithm 'online-dpo': "
                                          r"TRL samples 2 per prompt"),
    ("ppo", {"evalSteps": 5}, r"hyperparameters\.evalSteps: is not used by algorithm 'ppo': its loop has no "
                              r"in-training evaluation"),
    ("rlaif", {"evalSteps": 5}, r"hyperparameters\.evalSteps: is not used by rlaif with hyperparameters\.feedback: "
                                r"direct: the PPO loop has no in-training evaluation"),
    ("sft", {"maxPromptLength": 64}, r"hyperparameters\.maxPromptLength: is not used by algorithm 'sft': it trains "
                                     r"on whole conversations"),
    ("grpo", {"maxLength": 67, "maxCompletionLength": 64}, r"hyperparameters\.maxLength: \(67\) must exceed "
                                                           r"maxCompletionLength \(64\) by at least 4"),
    ("ppo", {"maxLength": 64}, r"hyperparameters\.maxLength: \(64\) must exceed maxCompletionLength \(64\)"),
    ("cpo", {"lossType": "hinge", "labelSmoothing": 0.1}, r"hyperparameters\.labelSmoothing: is not used by cpo's "
                                                          r"lossType 'hinge'"),
])
def test_knobs_an_algorithm_cannot_use_are_refused_with_the_reason(algorithm: str, hp: dict[str, Any],
                                                                   message: str) -> None:
    if algorithm == "rlaif":
        doc = job("rlaif", hp)
        doc["spec"]["grader"] = {"type": "score_model", "name": "judge", "model": "m", "input": [
            {"role": "user", "content": "{{sample.output_text}}"}]}
    else:
        doc = job(algorithm, hp)
    with pytest.raises(ManifestError, match=message):
        validate_document(doc)


def test_what_stays_accepted() -> None:
    validate_document(job("grpo", {"maxLength": 68, "maxCompletionLength": 64, "maxPromptLength": 8}))
    validate_document(job("online-dpo", {"maxPromptLength": 8}))
    validate_document(job("ppo", {"gradientCheckpointing": True, "maxLength": 128}))
    validate_document(job("dpo", {"evalSteps": 5, "maxPromptLength": 64}))
    validate_document(job("sft", {"maxLength": 64}))


def test_ppo_gradient_checkpointing_recomputes_without_changing_the_gradients() -> None:
    """gradientCheckpointing in our PPO loop: the decoder layers checkpoint, and the LoRA gradients of a training
    forward + backward are those without it (recomputation, not another computation)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from align_trainer.algorithms.ppo import enable_gradient_checkpointing

    def grads(checkpointing: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = get_peft_model(builtin.build_model("tiny"), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                                       lora_dropout=0.0, init_lora_weights=False))
        if checkpointing:
            enable_gradient_checkpointing(model)
        assert model.get_base_model().is_activation_checkpointing == checkpointing
        model.train()
        ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(1))
        model(input_ids=ids, labels=ids).loss.backward()
        found = [p.grad.clone() for n, p in model.named_parameters() if p.requires_grad]
        assert found and all(g is not None and g.abs().sum() > 0 for g in found)
        return found

    plain, checkpointed = grads(False), grads(True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))
