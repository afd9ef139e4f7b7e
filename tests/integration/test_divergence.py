"""Divergence for real (issue 12): an absurd learning rate, no injected NaN, and the run ends Diverged, for a TRL
trainer (sft) and our own loop (ppo).

What an absurd learning rate does to builtin://tiny in float32: AdamW moves every LoRA weight by ~lr per step,
the residual stream grows to ~1e20 by step 3 and RMSNorm's mean square overflows; rsqrt(inf) = 0 zeroes every
logit, so the loss sits at exactly ln(261) with a zero gradient and never becomes NaN. Only the residual-stream
watch (align_trainer.numerics) sees it; without it the sft run below exits 0 with a dead adapter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from align_api.constants import ExitCode
from align_trainer.main import run

from .rl_support import one_thread  # noqa: F401  (fixture)
from .trainer_support import manifest, read_metrics

pytestmark = pytest.mark.integration
RESIDUAL = "activations/residual_rms_max"
LETTERS = {"type": "python", "name": "letters", "source": (
    "def grade(sample, item):\n    text = sample['output_text']\n"
    "    return sum(c.islower() for c in text) / max(1, len(text))\n")}


def diverge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str, data: str, **spec: object) -> list[dict]:
    term = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(term))
    extra: dict = spec.pop("hp", {})  # type: ignore[assignment]
    hp = {"learningRate": 100.0, "lrScheduler": "constant", "maxSteps": 12, **extra}
    config = manifest(tmp_path, f"{algorithm}-lr100", algorithm, data, hp=hp,
                      checkpoints={"everySteps": 100, "keep": 1}, **spec)
    output = tmp_path / "out"
    assert run(["--config", str(config), "--output", str(output), "--metrics-port", "-1"]) == ExitCode.DIVERGED
    message = term.read_text()
    assert message.startswith("Diverged: training diverged at step ") and f"{RESIDUAL}=inf" in message, message
    assert "overflowed float32" in message
    status = json.loads((output / "status.json").read_text())
    assert status["state"] == "Failed" and status["reason"] == "Diverged"
    assert not (output / "final").exists()
    return read_metrics(output)


def test_sft_at_an_absurd_learning_rate_diverges_without_any_nan(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    records = diverge(tmp_path, monkeypatch, "sft", "sft.openai.jsonl")
    last = records[-1]
    assert last["step"] < 12 and last[RESIDUAL] == math.inf
    # the collapse a NaN check cannot see: every value finite, logits all 0 (loss = ln |V|), gradient exactly 0
    assert all(not math.isnan(v) for r in records for v in r.values() if isinstance(v, float))
    assert last["loss"] == pytest.approx(math.log(261), rel=1e-5) and last["grad_norm"] == 0.0
    # it got there by training: the residual stream grew step by step from a healthy start
    rms = [r[RESIDUAL] for r in records]
    assert rms[0] < 1 and all(a < b for a, b in zip(rms, rms[1:]))


def test_ppo_at_an_absurd_learning_rate_diverges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = diverge(tmp_path, monkeypatch, "ppo", "rft.openai.jsonl", grader=LETTERS,
                      hp={"batchSize": 4, "numGenerations": 2, "maxCompletionLength": 4, "temperature": 0.15})
    rms = [r[RESIDUAL] for r in records]
    assert rms[-1] == math.inf and rms[0] < 1 and records[-1]["step"] < 12
    assert all(math.isfinite(r["loss"]) for r in records)  # PPO's own loss stays finite: the watch stopped it


@pytest.mark.slow
def test_operator_reports_a_real_divergence_as_failed_diverged(tmp_path: Path) -> None:
    """The same sft run as a pod of the operator on the emulated cluster (the real trainer, not the fake one):
    exit code 12 -> podFailurePolicy FailJob -> phase Failed, reason Diverged, no retry."""
    from align_localcluster import LocalCluster
    from .trainer_support import DATA
    job = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "absurd-lr"},
           "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16}},
                    "data": {"train": {"uri": f"file://{DATA / 'sft.openai.jsonl'}"}},
                    "hyperparameters": {"learningRate": 100.0, "lrScheduler": "constant", "maxSteps": 12,
                                        "batchSize": 8, "maxLength": 96},
                    "resources": {"gpusPerNode": 0}, "evaluation": {"enabled": False}}}
    settings = {"scrape_interval_seconds": 0.5, "status_interval_seconds": 1.0}
    with LocalCluster(tmp_path, gpus=0, env={"OMP_NUM_THREADS": "1"}, settings=settings) as sb:
        sb.apply(job)
        done = sb.wait("absurd-lr", timeout=300)
        logs = "".join(sb.logs(p["metadata"]["name"]) for p in sb.list(kind="Pod"))
        pods = sb.list("Pod", labels="align.dev/job=absurd-lr")
    status = done["status"]
    assert status["phase"] == "Failed" and status["lastError"]["reason"] == "Diverged", (status, logs[-3000:])
    assert f"{RESIDUAL}=inf" in status["lastError"]["message"]
    assert {c["type"]: c for c in status["conditions"]}["Failed"]["reason"] == "Diverged"
    assert len(pods) == 1  # permanent: not retried
