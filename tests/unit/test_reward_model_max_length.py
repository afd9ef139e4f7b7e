"""The reward_model grader's max_length: each scored text (prompt + answer) is cut to its last max_length tokens,
so the answer's end, where a sequence-classification model reads its score, is kept; absent, the whole text is
scored. Reward training fits its pairs the same way (truncation.fit_answers) instead of TRL dropping them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from align_api.graders import Grader, RewardModelGrader
from align_api.hyperparameters import Hyperparameters
from align_api.validate import ManifestError, validate_document
from align_trainer import builtin
from align_trainer.chat import prompt_text
from align_trainer.graders.reward_model import RewardModelScorer
from align_trainer.inference import reward_model_input
from align_trainer.truncation import fit_dataset

PROMPT = "Question: " + "some background words " * 4
ANSWER = "the answer ends right here."
MAX = 40  # bytes (the builtin tokenizer is byte-level): the prompt's start is cut, the answer is kept


def _reward_model() -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification
    config = LlamaConfig(vocab_size=256 + len(builtin.SPECIAL_TOKENS), pad_token_id=256, num_labels=1,
                         **builtin.ARCHITECTURES["tiny"])
    state = torch.random.get_rng_state()
    torch.manual_seed(3)
    try:
        model = LlamaForSequenceClassification(config)
    finally:
        torch.random.set_rng_state(state)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # scores far enough apart to tell the cuts apart
    return model.eval()


def _score(model: Any, ids: list[int]) -> float:
    import torch
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def _spec(**extra: Any) -> RewardModelGrader:
    return RewardModelGrader(type="reward_model", model="file:///unused", **extra)


def test_the_grader_scores_the_last_max_length_tokens() -> None:
    tok, model = builtin.build_tokenizer(), _reward_model()
    ids = tok(reward_model_input(PROMPT, ANSWER, tok), add_special_tokens=False)["input_ids"]
    short = tok(reward_model_input("Q", "ok", tok), add_special_tokens=False)["input_ids"]
    assert len(ids) > MAX + 20 and len(short) < MAX
    assert ids[-1] == tok.eos_token_id  # the window kept by a left cut ends with the answer's end
    left, right, whole = _score(model, ids[-MAX:]), _score(model, ids[:MAX]), _score(model, ids)
    assert min(abs(left - right), abs(left - whole)) > 1e-3  # the three readings differ: the test can tell them apart

    samples, items = [{"output_text": ANSWER}, {"output_text": "ok"}], [{"prompt": PROMPT}, {"prompt": "Q"}]
    cut = RewardModelScorer(_spec(max_length=MAX), model=model, tokenizer=tok).grade_batch(samples, items)
    assert cut[0].reward == pytest.approx(left, abs=1e-4)  # cut from the left, not the right, not ignored
    assert cut[1].reward == pytest.approx(_score(model, short), abs=1e-4)  # a short text, padded in the batch, whole
    full = RewardModelScorer(_spec(), model=model, tokenizer=tok).grade_batch(samples, items)
    assert full[0].reward == pytest.approx(whole, abs=1e-4)  # absent: the whole text, as before
    # the cut is made on the ids: the tokenizer shared with training and collators keeps its settings
    assert (tok.truncation_side, tok.padding_side) == ("right", "right")


def test_the_evaluation_reward_model_scorer_honours_max_length(tmp_path: Path) -> None:
    """evaluation.scorer: reward_model scores with the grader spec (GraderScorer): the same cut applies."""
    from align_trainer.evaluation.scoring import GraderScorer
    tok, model = builtin.build_tokenizer(), _reward_model()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ids = tok(reward_model_input(PROMPT, ANSWER, tok), add_special_tokens=False)["input_ids"]
    grader = RewardModelGrader(type="reward_model", model=f"file://{tmp_path}", max_length=MAX)
    scores = GraderScorer(grader).score([{"prompt": PROMPT}], [ANSWER])
    assert scores[0].reward == pytest.approx(_score(model, ids[-MAX:]), abs=1e-4)


@pytest.mark.parametrize("value", [0, -5, "many", 2.5])
def test_max_length_must_be_a_positive_int(value: Any) -> None:
    with pytest.raises(ValidationError, match="max_length"):
        TypeAdapter(Grader).validate_python({"type": "reward_model", "model": "file:///m", "max_length": value})
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"},
           "spec": {"algorithm": "rpo", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "rows.jsonl"}},
                    "grader": {"type": "reward_model", "model": "file:///m", "max_length": value}}}
    with pytest.raises(ManifestError, match=r"grader\.max_length"):
        validate_document(doc)


@pytest.mark.parametrize("conversational", [False, True])
def test_reward_rows_keep_the_end_of_answers_that_do_not_fit(conversational: bool) -> None:
    from datasets import Dataset
    tok = builtin.build_tokenizer()
    long = "start of a long answer " + "y" * 80 + " end of it."
    prompt: Any = [{"role": "user", "content": "Why?"}] if conversational else "Why? "

    def answer(text: str) -> Any:
        return [{"role": "assistant", "content": text}] if conversational else text

    rows = Dataset.from_list([{"prompt": prompt, "chosen": answer(long), "rejected": answer("short.")}])
    hp = Hyperparameters(max_length=64)
    fitted = fit_dataset(rows, tok, hp, "train", keep_answer_end=True)[0]
    for key in ("chosen", "rejected"):  # what TRL's RewardTrainer measures: the whole rendered text
        text = reward_model_input(fitted["prompt"], fitted[key], tok)
        assert len(tok(text, add_special_tokens=False)["input_ids"]) <= 64
    chosen = fitted["chosen"][0]["content"] if conversational else fitted["chosen"]
    assert chosen.endswith(" end of it.") and "start of" not in chosen and len(chosen) > 20
    assert fitted["rejected"] == rows[0]["rejected"] and fitted["prompt"] == prompt  # what fits is left whole
    assert len(tok(prompt_text(tok, prompt), add_special_tokens=False)["input_ids"]) < 32  # only the answer was cut
    # other algorithms: answers are TRL's to truncate (keep_start), left as they are here
    assert fit_dataset(rows, tok, hp, "train") is rows
