"""Evaluation after real training on builtin://tiny, through the trainer's entry point.

A DPO job on a synthetic task ("yes" answers preferred over "no" answers) must beat its reference by a
clear margin; the same job with the preferences flipped must lose to it, fail its gate with
EvaluationGateFailed (exit code 13) and leave its adapter unpublished. The scorer is the job's python
grader run through the graders package, as in production.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from align_api.constants import ExitCode, Reason

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


#: +1 per "yes", -1 per "no", normalised: the reference (untrained tiny model) scores 0 on its noise.
GRADER = """
def grade(sample, item):
    text = sample["output_text"]
    yes, no = text.count("yes"), text.count("no")
    return (yes - no) / max(yes + no, 1)
"""


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghklmprst") for _ in range(rng.randint(3, 8)))


def write_task(directory: Path, *, flipped: bool, pairs: int = 64, prompts: int = 16) -> None:
    rng = random.Random(0)
    rows = []
    for _ in range(pairs):
        good, bad = " ".join(["yes"] * rng.randint(2, 4)), " ".join(["no"] * rng.randint(2, 4))
        chosen, rejected = (bad, good) if flipped else (good, bad)
        rows.append({"prompt": f"Q: {_word(rng)} {_word(rng)}?\nA: ", "chosen": chosen, "rejected": rejected})
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    held_out = [{"prompt": f"Q: {_word(rng)} {_word(rng)}?\nA: "} for _ in range(prompts)]
    (directory / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))


def manifest(directory: Path, name: str, published: Path, *, at_checkpoints: bool = False) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": name},
        "spec": {
            "algorithm": "dpo",
            "model": {"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16}},
            "data": {"train": {"uri": "./train.jsonl", "format": "trl"}},
            "hyperparameters": {"maxSteps": 20, "batchSize": 8, "learningRate": 0.005, "beta": 0.1, "maxLength": 64},
            "resources": {"gpusPerNode": 0},
            "checkpoints": {"everySteps": 10 if at_checkpoints else 1000},
            "output": {"uri": f"file://{published}"},
            "evaluation": {
                "prompts": {"uri": "./prompts.jsonl", "format": "trl"},
                "samples": 16,
                "generation": {"maxNewTokens": 12},
                "grader": {"type": "python", "name": "yes_over_no", "source": GRADER},
                "gates": ["winRate >= 0.55", "rewardDeltaLow > 0"],
                "atCheckpoints": at_checkpoints,
            },
        },
    }
    path = directory / "job.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, *, flipped: bool) -> tuple[int, Path, Path]:
    from align_trainer.main import run
    work = tmp_path / name
    work.mkdir()
    write_task(work, flipped=flipped)
    published = tmp_path / f"{name}-published"
    out = work / "out"
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(out))  # not --output: that would switch uploading off
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(work / "termination-log"))
    code = run(["--config", str(manifest(work, name, published, at_checkpoints=not flipped)), "--metrics-port", "-1"])
    return code, out, published


def test_dpo_beats_reference_and_flipped_preferences_lose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, published = train(tmp_path, monkeypatch, "dpo-good", flipped=False)
    assert code == ExitCode.OK
    good = json.loads((out / "evaluation.json").read_text())
    assert good["kind"] == "policy" and good["passed"] is True
    assert good["status"]["winRate"] >= 0.8, good["status"]
    assert good["status"]["rewardDeltaLow"] > 0
    assert (published / "adapter" / "adapter_model.safetensors").exists()  # published
    assert (published / "evaluation" / "report.md").exists()
    assert "## Evaluation" in (published / "adapter" / "README.md").read_text()
    report = (out / "report.md").read_text()
    assert "## Largest gains" in report and "yes" in report
    for chart in ("reward_distributions.png", "reward_vs_length.png", "win_tie_loss.png"):
        _assert_real_png(out / chart)
    # atCheckpoints: one evaluation per checkpoint, none of them gating
    steps = sorted(p.name for p in (out / "evaluations").iterdir())
    assert steps == ["step-10", "step-20"]
    assert json.loads((out / "evaluations" / "step-10" / "evaluation.json").read_text())["gates"] == []

    code, out, published = train(tmp_path, monkeypatch, "dpo-flipped", flipped=True)
    assert code == ExitCode.EVALUATION_GATE_FAILED
    flipped = json.loads((out / "evaluation.json").read_text())
    assert flipped["status"]["winRate"] <= 0.2, flipped["status"]
    assert flipped["status"]["lossRate"] > flipped["status"]["winRate"]
    assert flipped["passed"] is False and not any(g["passed"] for g in flipped["gates"])
    # A failed gate blocks publication: nothing uploaded, no final/ left that could be mistaken for it.
    assert not (published / "adapter").exists()
    assert not (out / "final").exists() and (out / "gate-failed" / "adapter_model.safetensors").exists()
    assert (published / "evaluation" / "report.md").exists()  # the report says why
    message = (tmp_path / "dpo-flipped" / "termination-log").read_text()
    assert message.startswith(f"{Reason.EVALUATION_GATE_FAILED}: evaluation gate failed: winRate >= 0.55")
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "Failed" and status["reason"] == Reason.EVALUATION_GATE_FAILED


def _assert_real_png(path: Path) -> None:
    import matplotlib.image as mpimg
    assert path.stat().st_size > 5_000, path
    pixels = mpimg.imread(path)
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05, f"{path} is a single colour"
