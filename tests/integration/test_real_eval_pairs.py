"""bench/real_eval.py scores a held-out preference pair on the very tokens the trainer trains on: a prompt longer
than maxPromptLength is cut from the left (the trainer's align_trainer.truncation), and prompt + answer is cut at
maxLength keeping the start (TRL). Scored on the full prompt instead, a long prompt would leave no answer token
within maxLength and the pair would drop out of the held-out accuracy (docs/algorithms.md, "On a real model")."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import smollm2

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import real_eval as ev  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]

LONG = " ".join(f"Background sentence number {i} about the garden, the weather and the neighbours." for i in range(30))


def _rows() -> list[dict[str, Any]]:
    return [{"input": {"messages": [{"role": "user", "content": f"{LONG} Question {i}: what grows best in shade?"}]},
             "preferred_output": [{"role": "assistant", "content": f"Ferns and hostas grow well in shade ({i})."}],
             "non_preferred_output": [{"role": "assistant", "content": "Cacti, which need full sun."}]}
            for i in range(2)] + [
            {"input": {"messages": [{"role": "user", "content": "Name a colour."}]},
             "preferred_output": [{"role": "assistant", "content": "Blue. " * 60}],  # longer than maxLength
             "non_preferred_output": [{"role": "assistant", "content": "No."}]}]


def test_pairs_are_scored_on_the_prompt_and_answer_tokens_the_trainer_trains_on(tmp_path: Path) -> None:
    from trl import DPOConfig, DPOTrainer

    from align_api.data import DataSpec
    from align_api.hyperparameters import Hyperparameters
    from align_trainer.data import load_for
    from align_trainer.runtime import DataKind
    from align_trainer.truncation import FitReport, fit_dataset
    tok = smollm2.tokenizer()
    rows, max_length, max_prompt_length = _rows(), 96, 48
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = load_for(DataKind.PREFERENCE, DataSpec.model_validate({"train": {"uri": str(path)}}), base_dir=tmp_path,
                     cache_dir=tmp_path / "c", seed=0)[0]
    fitted = fit_dataset(train, tok, Hyperparameters(max_length=max_length, max_prompt_length=max_prompt_length),
                         "train")
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), report_to="none", use_cpu=True, max_length=max_length)
    prepared = DPOTrainer(model=smollm2.tiny_model(), ref_model=smollm2.tiny_model(), args=args,
                          train_dataset=fitted, processing_class=tok).train_dataset
    by_chosen = {tok.decode(r["chosen_ids"]): r for r in prepared}

    report = FitReport()
    scores = ev.pair_logps(smollm2.tiny_model(), tok, rows, max_length=max_length,
                           max_prompt_length=max_prompt_length, report=report)
    assert report.cut == 2  # the two long prompts; the short one is left whole
    for row, (_, chosen_n, _, rejected_n) in zip(rows, scores):
        trained = by_chosen[row["preferred_output"][0]["content"] + "<|im_end|>\n"]
        prompt = ev.fit_pair_prompt(tok, row, max_length=max_length, max_prompt_length=max_prompt_length)
        rendered = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        assert tok(rendered, add_special_tokens=False)["input_ids"] == trained["prompt_ids"]
        room = max_length - len(trained["prompt_ids"])  # TRL's collator keeps the start of prompt + answer
        assert (chosen_n, rejected_n) == (min(len(trained["chosen_ids"]), room),
                                          min(len(trained["rejected_ids"]), room))
        assert chosen_n > 0 and rejected_n > 0
    assert ev.preference_accuracy(scores)["pairs"] == len(rows)  # every pair leaves answer tokens
