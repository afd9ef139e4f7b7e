"""Reward-model evaluation after real training on builtin://tiny: the length-bias flag.

A reward model trained on pairs whose chosen answer is always longer (content random) learns to count
tokens. Held-out probe pairs, half of them with the chosen answer shorter, expose it: accuracy by length
bucket collapses where the chosen answer is shorter, and the evaluation flags length bias. A reward model
trained on a content signal with lengths independent of the label is not flagged.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from align_api.constants import ExitCode

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


Pair = dict[str, str]


def _text(rng: random.Random, words: int) -> str:
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 6)))
                    for _ in range(words))


def longer_is_chosen(rng: random.Random, chosen_longer: bool = True) -> Pair:
    long, short = _text(rng, rng.randint(6, 14)), _text(rng, rng.randint(1, 5))
    chosen, rejected = (long, short) if chosen_longer else (short, long)
    return {"prompt": f"Q: {_text(rng, 2)}?\nA: ", "chosen": chosen, "rejected": rejected}


def yes_is_chosen(rng: random.Random, chosen_longer: bool = True) -> Pair:
    """Content decides (a "yes" answer beats a "no" answer); lengths are drawn independently of the label."""
    good = " ".join(["yes"] * rng.randint(1, 8))
    bad = " ".join(["no"] * rng.randint(1, 8))
    return {"prompt": f"Q: {_text(rng, 2)}?\nA: ", "chosen": good, "rejected": bad}


def run_reward_job(tmp_path: Path, name: str, make: Callable[..., Pair]) -> dict[str, Any]:
    from align_trainer.main import run
    rng = random.Random(0)
    work = tmp_path / name
    work.mkdir()
    train = [make(rng) for _ in range(128)]
    probes = [make(rng, chosen_longer=i % 2 == 0) for i in range(48)]  # held out; half with the chosen shorter
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (work / "probes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in probes))
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": name},
           "spec": {"algorithm": "reward", "model": {"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16}},
                    "data": {"train": {"uri": "./train.jsonl", "format": "trl"}},
                    "hyperparameters": {"maxSteps": 24, "batchSize": 8, "learningRate": 0.005, "maxLength": 96},
                    "resources": {"gpusPerNode": 0}, "checkpoints": {"everySteps": 1000},
                    "evaluation": {"prompts": {"uri": "./probes.jsonl", "format": "trl"}, "samples": 48}}}
    (work / "job.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    code = run(["--config", str(work / "job.yaml"), "--output", str(work / "out"), "--metrics-port", "-1"])
    assert code == ExitCode.OK
    return json.loads((work / "out" / "evaluation.json").read_text()) | {"out": str(work / "out")}


def test_length_biased_reward_model_is_flagged(tmp_path: Path) -> None:
    doc = run_reward_job(tmp_path, "rm-longer", longer_is_chosen)
    assert doc["kind"] == "reward_model"
    buckets = doc["details"]["lengthBuckets"]
    assert buckets["chosen longer"]["n"] >= 20 and buckets["chosen shorter"]["n"] >= 20
    assert buckets["chosen longer"]["accuracy"] >= 0.9, buckets
    assert buckets["chosen shorter"]["accuracy"] <= 0.2, buckets
    assert doc["details"]["lengthBiasFlag"] is True and doc["status"]["lengthBias"] == 1.0
    assert any("when the chosen answer is longer" in r for r in doc["details"]["lengthBiasReasons"])
    out = Path(doc["out"])
    report = (out / "report.md").read_text()
    assert "**Length bias:**" in report and "## Accuracy by length" in report
    for chart in ("rm_rewards.png", "rm_calibration.png", "rm_length_buckets.png"):
        assert (out / chart).stat().st_size > 5_000


def test_content_reward_model_is_not_flagged(tmp_path: Path) -> None:
    doc = run_reward_job(tmp_path, "rm-content", yes_is_chosen)
    assert doc["status"]["accuracy"] >= 0.9, doc["status"]
    assert doc["details"]["lengthBiasFlag"] is False, doc["details"]["lengthBiasReasons"]
