"""A synthetic preference task with known, varying quality gaps (shared by tests and bench/rpo_ranking.py).

Answers are 4 letters from "abcdefgh"; each letter has a known weight and the quality of an answer is the mean
weight of its letters, so every pair's reward gap is known exactly. Training pairs are random pairs of answers
(chosen = the better one), so their gaps vary from nearly tied to far apart, and each row carries
chosen_reward/rejected_reward. The held-out set is only *near-equal* pairs (gap 0.05..0.35 on a 0..3 scale) of
answers never seen in training: ranking them right needs the fine weights of the letters, which pair labels alone
(what DPO sees) pin down far less than the gaps (what RPO matches).

Metric: the fraction of held-out pairs whose better answer the model gives the higher log-likelihood
(log pi(y_w|x) > log pi(y_l|x); the answers have equal length). The reference (untrained) model scores ~0.5.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

LETTERS = "abcdefgh"
WEIGHTS = dict(zip(LETTERS, (3.0, 2.4, 1.9, 1.3, 0.8, 0.3, -0.4, -1.0)))
PROMPT = "Q:"
NEAR = (0.05, 0.35)


def quality(answer: str) -> float:
    return sum(WEIGHTS[c] for c in answer) / len(answer)


def make_task(seed: int, n_train: int = 128, n_test: int = 160) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """(training rows with rewards, held-out near-equal (better, worse) pairs over unseen answers)."""
    rng = random.Random(seed)
    answers = ["".join(t) for t in itertools.product(LETTERS, repeat=4)]
    rng.shuffle(answers)
    train_answers, test_answers = answers[:600], answers[600:]
    rows = []
    while len(rows) < n_train:
        a, b = rng.sample(train_answers, 2)
        if abs(quality(a) - quality(b)) < 0.01:
            continue
        hi, lo = (a, b) if quality(a) > quality(b) else (b, a)
        rows.append({"prompt": PROMPT, "chosen": hi, "rejected": lo,
                     "chosen_reward": round(quality(hi), 4), "rejected_reward": round(quality(lo), 4)})
    test: list[tuple[str, str]] = []
    while len(test) < n_test:
        a, b = rng.sample(test_answers, 2)
        gap = abs(quality(a) - quality(b))
        if NEAR[0] <= gap <= NEAR[1]:
            test.append((a, b) if quality(a) > quality(b) else (b, a))
    return rows, test


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def ranking_accuracy(adapter_dir: Path | None, pairs: list[tuple[str, str]]) -> float:
    """Fraction of pairs ranked right by log-likelihood under builtin://tiny + the adapter (None: the reference)."""
    import torch
    from transformers import AutoModelForCausalLM

    from align_trainer.builtin import build_tokenizer, materialize
    tokenizer = build_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(str(materialize("tiny")))
    if adapter_dir is not None:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    prompt_len = len(tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    texts = sorted({t for pair in pairs for t in pair})
    enc = tokenizer([PROMPT + t + tokenizer.eos_token for t in texts], add_special_tokens=False,
                    return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**enc).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, enc["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = enc["attention_mask"][:, 1:].clone()
    mask[:, : prompt_len - 1] = 0  # completion tokens only
    score = dict(zip(texts, (logp * mask).sum(1).tolist()))
    return sum(score[w] > score[l] for w, l in pairs) / len(pairs)


def job(name: str, algorithm: str, train: Path, seed: int, **hp: Any) -> dict[str, Any]:
    """The AlignmentJob of one run (same settings for dpo and rpo but the algorithm's own knobs)."""
    hyper = {"batchSize": 16, "learningRate": 0.01, "maxLength": 32, "maxSteps": 48, "beta": 0.5, "seed": seed,
             "loggingSteps": 8, **hp}
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": name},
            "spec": {"algorithm": algorithm,
                     "model": {"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16, "dropout": 0.0}},
                     "data": {"train": {"uri": str(train)}},
                     "hyperparameters": hyper, "resources": {"gpusPerNode": 0},
                     "checkpoints": {"everySteps": 1000, "keep": 1}, "evaluation": {"enabled": False}}}


def train(tmp: Path, name: str, doc: dict[str, Any]) -> Path:
    """Run the trainer in-process; the final adapter's directory."""
    import os

    import yaml

    from align_trainer.main import run
    config = tmp / f"{name}.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp / name
    previous = os.environ.get("ALIGN_OUTPUT_DIR")
    os.environ["ALIGN_OUTPUT_DIR"] = str(out)
    try:
        code = run(["--config", str(config), "--metrics-port", "-1"])
    finally:
        if previous is None:
            os.environ.pop("ALIGN_OUTPUT_DIR", None)
        else:
            os.environ["ALIGN_OUTPUT_DIR"] = previous
    if code != 0:
        raise RuntimeError(f"{name}: trainer exited {code}")
    return out / "final"
