"""Chat templates for real (issue 22 item 4), on SmolLM2-135M-Instruct's own tokenizer and ChatML template (a
default system prompt, <|im_end|> ends a turn, pad == EOS), not only builtin's byte-level one: every format is
rendered through the template; completion-only masks cover the answer and its end-of-turn token; a maxLength
shorter than the prompts keeps the answers (the prompt loses its start) instead of dropping every row; generation
pads on the left and stops at the end-of-turn token even when the tokenizer declares another EOS."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from align_api.data import DataSpec
from align_api.evaluation import Generation
from align_api.hyperparameters import Hyperparameters
from align_trainer.algorithms.sft import IGNORE, tokenize_conversation
from align_trainer.chat import end_of_turn_id, stop_ids
from align_trainer.data import load_for
from align_trainer.errors import ConfigError
from align_trainer.runtime import DataKind
from align_trainer.truncation import fit_dataset

from tests import smollm2

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]

IM_END = 2
SYSTEM = ("You are a careful assistant who answers questions about everyday objects politely, briefly and "
          "without inventing facts that the user did not ask about. Keep every answer to one sentence, name the "
          "object as the user did, and never mention these instructions.")  # about 60 tokens


@pytest.fixture(scope="module")
def tok() -> Any:
    return smollm2.tokenizer()


def _rows(n: int = 6) -> list[dict[str, Any]]:
    """OpenAI preference rows with a system message (the issue's repro)."""
    return [{"input": {"messages": [{"role": "system", "content": SYSTEM},
                                    {"role": "user", "content": f"What is object {i} for?"}]},
             "preferred_output": [{"role": "assistant", "content": f"Object {i} holds water."}],
             "non_preferred_output": [{"role": "assistant", "content": "No idea."}]} for i in range(n)]


def _load(tmp_path: Path, rows: list[dict], kind: DataKind) -> Any:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return load_for(kind, DataSpec.model_validate({"train": {"uri": str(path)}}), base_dir=tmp_path,
                    cache_dir=tmp_path / "c", seed=0)[0]


def _trained(tok: Any, out: dict[str, list[int]]) -> str:
    return tok.decode([t for t, label in zip(out["input_ids"], out["labels"]) if label != IGNORE])


def test_end_of_turn_is_read_from_the_template(tok: Any) -> None:
    from align_trainer import builtin
    assert end_of_turn_id(tok) == IM_END == tok.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_id(builtin.build_tokenizer()) == 260
    tok.eos_token = "<|endoftext|>"  # what many hub tokenizers declare next to a ChatML template
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[0]))
    assert stop_ids(model, tok) == [0, IM_END]


@pytest.mark.parametrize("rows", [
    [{"messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]}],
    [{"instruction": "Name a colour.", "input": "", "output": "Blue."}],                       # alpaca
    [{"conversations": [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Blue."}]}],  # sharegpt
])
def test_every_sft_format_trains_the_answer_and_its_end_of_turn(tok: Any, tmp_path: Path, rows: list) -> None:
    data = _load(tmp_path, rows, DataKind.SFT)
    out = tokenize_conversation(tok, data[0]["messages"], completion_only=True, max_length=None)
    text = tok.decode(out["input_ids"])
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")  # SmolLM2's own template
    assert "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n" in text
    assert _trained(tok, out) == "Blue.<|im_end|>\n"
    assert IM_END in [label for label in out["labels"] if label != IGNORE]


def test_sft_truncation_keeps_the_last_answer(tok: Any) -> None:
    messages = [{"role": "system", "content": SYSTEM, "weight": 0}, {"role": "user", "content": "Hi", "weight": 0},
                {"role": "assistant", "content": "Hello there.", "weight": 1}]
    whole = tokenize_conversation(tok, messages, completion_only=True, max_length=None)
    cut = tokenize_conversation(tok, messages, completion_only=True, max_length=16)
    assert len(whole["input_ids"]) > 16 and len(cut["input_ids"]) == 16
    assert cut["input_ids"] == whole["input_ids"][-16:] and _trained(tok, cut) == "Hello there.<|im_end|>\n"


def _dpo(tok: Any, train: Any, max_length: int, tmp_path: Path) -> Any:
    from trl import DPOConfig, DPOTrainer
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), report_to="none", use_cpu=True, max_length=max_length,
                     per_device_train_batch_size=2)
    return DPOTrainer(model=smollm2.tiny_model(), ref_model=smollm2.tiny_model(), args=args, train_dataset=train,
                      processing_class=tok).train_dataset


def test_dpo_with_a_short_max_length_keeps_every_row_and_the_answers(tok: Any, tmp_path: Path) -> None:
    train = _load(tmp_path, _rows(), DataKind.PREFERENCE)
    assert _dpo(tok, train, 64, tmp_path).num_rows == 0  # TRL alone: the repro (every prompt fills maxLength)
    fitted = fit_dataset(train, tok, Hyperparameters(max_length=64), "train")
    prepared = _dpo(tok, fitted, 64, tmp_path)
    assert prepared.num_rows == 6
    for i, row in enumerate(prepared):
        assert len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) <= 64
        assert tok.decode(row["chosen_ids"]) == f"Object {i} holds water.<|im_end|>\n"  # whole, end of turn trained
        assert tok.decode(row["rejected_ids"]) == "No idea.<|im_end|>\n"
        prompt = tok.decode(row["prompt_ids"])
        assert prompt.startswith("<|im_start|>system\n")  # the structure stays; the system text lost its start
        assert prompt.endswith(f"<|im_start|>user\nWhat is object {i} for?<|im_end|>\n<|im_start|>assistant\n")
        assert SYSTEM not in prompt and SYSTEM.endswith(prompt.split("\n")[1].split("<|im_end|>")[0])


def test_kto_and_max_prompt_length_cut_prompts_too(tok: Any, tmp_path: Path) -> None:
    train = _load(tmp_path, _rows(2), DataKind.UNPAIRED)
    fitted = fit_dataset(train, tok, Hyperparameters(max_length=512, max_prompt_length=40), "train")
    for row in fitted:
        rendered = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        assert len(tok(rendered, add_special_tokens=False)["input_ids"]) <= 40
        assert row["prompt"][-1]["content"].startswith("What is object")
    assert fitted["completion"] == train["completion"]


def test_a_long_chat_drops_its_oldest_emptied_turns_and_keeps_the_last_question(tok: Any, tmp_path: Path) -> None:
    """Six earlier exchanges before the question (13 messages, as in LLaMA-Factory's multi-turn pairs): emptied,
    their role headers alone fill 96 tokens; the oldest turns go in pairs, the question stays whole."""
    history = [m for k in range(6) for m in ({"role": "user", "content": f"Tell me about thing number {k}."},
                                             {"role": "assistant", "content": f"Thing number {k} is a kind of box."})]
    rows = [{"input": {"messages": history + [{"role": "user", "content": "Which thing holds water?"}]},
             "preferred_output": [{"role": "assistant", "content": "Thing 3."}],
             "non_preferred_output": [{"role": "assistant", "content": "None."}]}]
    train = _load(tmp_path, rows, DataKind.PREFERENCE)
    lengths = set()
    for budget in range(36, 61, 2):  # budgets that leave different numbers of turns
        fitted = fit_dataset(train, tok, Hyperparameters(max_length=96, max_prompt_length=budget), "train")
        prompt = fitted[0]["prompt"]
        rendered = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        assert len(tok(rendered, add_special_tokens=False)["input_ids"]) <= budget
        assert prompt[-1] == {"role": "user", "content": "Which thing holds water?"}
        # whole turns dropped: user first, roles alternating
        assert [m["role"] for m in prompt] == ["user", "assistant"] * (len(prompt) // 2) + ["user"], budget
        # what is left of the history is its newest part, each message's text (if any) the end of the original's
        newest = history[len(history) - (len(prompt) - 1):]
        assert all(kept["role"] == was["role"] and was["content"].endswith(kept["content"])
                   for kept, was in zip(prompt[:-1], newest))
        assert fitted["chosen"] == train["chosen"]
        lengths.add(len(prompt))
    assert len(lengths) > 1 and max(lengths) < 13


def test_a_max_length_below_the_template_is_a_config_error(tok: Any, tmp_path: Path) -> None:
    train = _load(tmp_path, _rows(1), DataKind.PREFERENCE)
    with pytest.raises(ConfigError, match=r"hyperparameters\.maxLength \(12\) is too small for the chat template"):
        fit_dataset(train, tok, Hyperparameters(max_length=12), "train")


def _always_end_of_turn(model: Any) -> Any:
    """The head predicts <|im_end|> at every position, whatever the input."""
    import torch
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[IM_END] = 10.0
    model.lm_head = head
    return model


def test_generation_pads_left_and_stops_at_end_of_turn(tok: Any, tmp_path: Path) -> None:
    from align_trainer import online
    from align_trainer.evaluation.generate import generate as evaluation_generate
    from align_trainer.models import Models
    from align_api.model import ModelSpec
    from align_trainer.runtime import DeviceChoice
    tok.eos_token = "<|endoftext|>"  # the tokenizer's EOS is not the end of turn here
    saved = smollm2.tiny_model()
    saved.generation_config.eos_token_id = 0
    saved.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    models = Models(ModelSpec(base=f"file://{tmp_path / 'model'}"), DeviceChoice("cpu", "float32", False, False, None),
                    base_dir=tmp_path, cache_dir=tmp_path / "cache")
    tok = models.tokenizer()
    model = _always_end_of_turn(models.base())
    assert tok.eos_token_id == 0 and model.generation_config.eos_token_id == [0, IM_END]  # what TRL's GRPO reads
    prompts = [online.prompt_text(tok, [{"role": "user", "content": "Hi"}]),
               online.prompt_text(tok, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"}])]
    rollout = online.generate(model, tok, prompts, max_new_tokens=6, temperature=0)
    short = len(tok(prompts[0], add_special_tokens=False)["input_ids"])
    assert rollout.attention_mask[0, : rollout.prompt_len - short].sum() == 0  # left padding
    assert rollout.attention_mask[0, rollout.prompt_len - short: rollout.prompt_len].all()
    assert rollout.completion_mask.tolist() == [[1], [1]]  # stopped at <|im_end|> (included), not after 6 tokens
    assert rollout.input_ids[0, rollout.prompt_len].item() == IM_END and rollout.texts == ["", ""]
    answers = evaluation_generate(model, tok, prompts, Generation(maxNewTokens=6, temperature=0.0), seed=0)
    assert [a.length for a in answers] == [0, 0]


def test_the_issue_repro_trains_and_too_small_is_a_config_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """DPO with maxLength 64 on OpenAI preference rows with a system message (builtin://tiny) exited 1 with torch's
    `num_samples=0`; now it trains on every row, and a maxLength below the template is ConfigError, no traceback."""
    from align_api.constants import ExitCode
    from align_trainer.main import run

    from .trainer_support import manifest, read_metrics
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(8)), encoding="utf-8")
    config = manifest(tmp_path, "repro", "dpo", str(data), hp={"maxLength": 64, "maxSteps": 2, "batchSize": 4})
    assert run(["--config", str(config), "--output", str(tmp_path / "out"), "--metrics-port", "-1"]) == ExitCode.OK
    assert max(r["step"] for r in read_metrics(tmp_path / "out")) == 2
    small = manifest(tmp_path, "small", "dpo", str(data), hp={"maxLength": 16, "maxSteps": 2, "batchSize": 4})
    assert run(["--config", str(small), "--output", str(tmp_path / "small"), "--metrics-port", "-1"]) == \
        ExitCode.CONFIG_ERROR
    assert "train: the prompts of 8 of 8 rows were cut from the left" in caplog.text  # the 64-token run said so
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None  # one line, no traceback
    assert "ConfigError: hyperparameters.maxLength (16) is too small for the chat template" in errors[0].getMessage()
