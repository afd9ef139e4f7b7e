"""ReFT on its task (examples/reft.yaml, data from examples/data/generate.py: "xyz c" -> reasoning "c=" then the
golden answer "2"): the RL stage, ppo or grpo, adds a margin over the warmed-up policy on HELD-OUT prompts, measured by the trainer's own probes (numGenerations
samples per held-out prompt at the job's temperature, the same seed for every probe of a run).

The test warms up for 4 epochs (the example: 8), which leaves the RL stage room on every seed: with 8, a seed
whose warm-up reached 0.90 gained nothing from RL (grpo +0.000, ppo +0.070). The thresholds come from the spread
over 6 seeds and 4 last-bit perturbations of seed 1's weights (tests/perturb.py; docs/algorithms.md, reft), not
from one machine's trajectory. The probes are seeded alike, so an RL stage that changes nothing (learning rate ~0,
or a reward it ignores) reproduces the warm-up's number and fails the margin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from align_api.constants import ExitCode

from .rl_support import one_thread  # noqa: F401  (fixture)
from .test_rl_config_wiring import Captured, capture, context  # noqa: F401  (fixture)
from .trainer_support import read_metrics

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "reft.yaml"
#: four balanced answers: a policy that ignores the prompt scores at most this on the held-out split
CHANCE = 0.25
#: the share of the warm-up's headroom (1 - warm-up reward) the RL stage must win on the held-out split; measured
#: over 6 seeds and 4 perturbations of seed 1: grpo 0.37..0.80, ppo 0.46..0.92 (a broken RL stage: 0)
HEADROOM_CLOSED = 0.15
WARMUP_EPOCHS = 4


def reft_job(tmp_path: Path, stage: str, seed: int = 1, **hp: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run examples/reft.yaml with `stage`; (metrics.jsonl records, the termination message)."""
    from align_trainer.main import run
    doc = yaml.safe_load(EXAMPLE.read_text())
    for split in doc["spec"]["data"].values():
        split["uri"] = str((EXAMPLE.parent / split["uri"]).resolve())
    doc["spec"]["hyperparameters"].update(rlStage=stage, seed=seed, **hp)
    doc["spec"]["evaluation"] = {"enabled": False}
    config, output, message = tmp_path / "reft.yaml", tmp_path / "out", tmp_path / "termination-log"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        env.setenv("ALIGN_TERMINATION_LOG", str(message))
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    return read_metrics(output), json.loads(message.read_text())


def probes(records: list[dict[str, Any]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for record in records:
        found.update({k: v for k, v in record.items() if k.startswith("reft/")})
    return found


def test_warm_up_learning_rate_is_its_own(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from align_trainer.algorithms import reft
    monkeypatch.setattr("trl.SFTTrainer", capture)
    for hp, expected in (({"learningRate": 0.01, "warmupLearningRate": 0.05}, 0.05), ({"learningRate": 0.01}, 0.01)):
        with pytest.raises(Captured) as caught:
            reft.warm_up(context("reft", "rft.openai.jsonl", {"warmupEpochs": 3, **hp}), None)
        args = caught.value.args[0]["args"]
        assert (args.learning_rate, args.num_train_epochs) == (expected, 3)


@pytest.mark.parametrize("stage", ["grpo", "ppo"])  # ~30-40 s each on 2 loaded cores
def test_reft_rl_stage_adds_a_held_out_margin_over_the_warm_up(tmp_path: Path, stage: str) -> None:
    records, message = reft_job(tmp_path, stage, warmupEpochs=WARMUP_EPOCHS)
    found = probes(records)
    assert found["reft/probe_heldout"] == 1.0 and found["reft/probe_prompts"] == 64, found  # the eval split
    # Luong et al.: the KL is to the warmed-up policy, so once the RL stage has bound its reference and before its
    # first update, policy and reference are the same network: KL 0 up to float error (the base as reference, the
    # bug this guards against, is several nats per completion away)
    assert found["reft/start_kl"] == pytest.approx(0.0, abs=1e-4), found
    # the warm-up learns the format (the base never answers a digit), the RL stage then beats the warm-up
    assert found["reft/initial_reward"] < 0.05, found
    assert found["reft/warmup_reward"] > found["reft/initial_reward"] + 0.1, found
    headroom = 1.0 - found["reft/warmup_reward"]  # measured 0.18..0.73
    assert found["reft/final_reward"] - found["reft/warmup_reward"] > HEADROOM_CLOSED * headroom > 0, found
    assert found["reft/final_reward"] > CHANCE, found  # above what ignoring the prompt can reach
    # the policy moved away from its reference (the warmed-up policy), by a finite amount
    assert 0 < found["reft/final_kl"] < 50, found
    # the same numbers reach status.metrics through the termination message (gauge spelling)
    final = message["finalMetrics"]
    for key in ("initial_reward", "warmup_reward", "final_reward", "final_kl"):
        assert final[f"reft_{key}"] == pytest.approx(found[f"reft/{key}"]), key
