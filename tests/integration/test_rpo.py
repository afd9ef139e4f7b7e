"""algorithm: rpo and iterative dpo/rpo on builtin://tiny.

- Offline dpo and rpo side by side on a synthetic preference set with known, varying gaps (rpo_support): both
  rank held-out near-equal pairs better than the reference, rpo (which sees the gaps) better than dpo (a flipped
  loss sign ranks them worse).
- Iterative dpo and rpo, 2 rounds against a grader: the held-out grader score after round 2 beats round 1's,
  and both beat the starting policy; samples and pairs of each round are written; a restart in the middle of a
  round reuses that round's samples instead of sampling and grading again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from align_api.constants import ExitCode

from .rl_support import LETTER_GRADER, one_thread  # noqa: F401
from .rpo_support import job, make_task, ranking_accuracy, train, write_rows
from .trainer_support import manifest, read_metrics, series

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: RPO's mean held-out ranking accuracy over DPO's on the same data, over SEEDS (one synthetic task each).
#: Measured rpo - dpo per seed: 1: +0.131, 2: +0.069, 3: +0.094 (last-bit perturbations of the weights,
#: tests/perturb.py: seed 1 +0.100..+0.144, 2 +0.062, 3 +0.094), so the mean of seeds 1-3 is 0.085..0.10. One seed
#: alone is no test: over seeds 1-10 the advantage is -0.019..+0.131 (mean +0.043; docs/algorithms.md, rpo).
ADVANTAGE = 0.03
SEEDS = (1, 2, 3)


def test_rpo_ranks_held_out_near_equal_pairs_better_than_dpo_on_the_same_data(tmp_path: Path) -> None:
    """DPO and RPO side by side: per seed the same 128 pairs, settings and seed; RPO also sees the reward gaps.
    Both rank held-out near ties better than the reference, and RPO better than DPO on average over the seeds."""
    found: dict[str, list[float]] = {"reference": [], "dpo": [], "rpo": []}
    for seed in SEEDS:
        rows, held_out = make_task(seed=seed)
        data = write_rows(tmp_path / f"train-{seed}.jsonl", rows)
        found["reference"].append(ranking_accuracy(None, held_out))
        for algorithm in ("dpo", "rpo"):
            name = f"{algorithm}-{seed}"
            found[algorithm].append(ranking_accuracy(train(tmp_path, name, job(name, algorithm, data, seed)), held_out))
    mean = {k: sum(v) / len(v) for k, v in found.items()}
    assert mean["dpo"] > mean["reference"] and mean["rpo"] > mean["reference"], found
    assert mean["rpo"] > mean["dpo"] + ADVANTAGE, found
    rows, _ = make_task(seed=SEEDS[-1])
    metrics = read_metrics(tmp_path / f"rpo-{SEEDS[-1]}")
    assert series(metrics, "rpo/reward_gap_mean")[0] == pytest.approx(
        sum(r["chosen_reward"] - r["rejected_reward"] for r in rows) / len(rows), abs=1e-4)
    errors = series(metrics, "rpo/margin_error")
    assert errors[-1] < errors[0], errors  # the implicit gaps move towards eta * reward gap


@pytest.mark.parametrize("algorithm", ["dpo", "rpo"])
def test_iterative_rounds_raise_the_held_out_score(tmp_path: Path, algorithm: str) -> None:
    from align_trainer.main import run
    # T=0.2: the random tiny model's samples differ enough for pairs in round 1 (at 0.15 nearly all tie)
    hp = {"rounds": 2, "numGenerations": 8, "batchSize": 16, "learningRate": 0.05, "maxCompletionLength": 4,
          "temperature": 0.2, "maxSteps": 12, "maxLength": 96, "beta": 0.1}
    config = manifest(tmp_path, f"{algorithm}-rounds", algorithm, "rft.openai.jsonl", hp=hp, grader=LETTER_GRADER)
    doc = yaml.safe_load(config.read_text())
    doc["spec"]["data"]["evalFraction"] = 0.25  # 12 held-out prompts, 36 to sample from
    config.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(out))
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    held_out = series(read_metrics(out), "rounds/eval_reward")  # starting policy, after round 1, after round 2
    assert len(held_out) == 3 and held_out[2] > held_out[1] > held_out[0], held_out
    samples = [json.loads(line) for line in (out / "rounds" / "round-2.jsonl").read_text().splitlines()]
    assert len(samples) == 36 * 8 and {"chosen", "rejected"} <= {s["pair"] for s in samples}
    pairs = json.loads((out / "rounds" / "round-2.pairs.json").read_text())["pairs"]
    assert all(p["reward_gap"] > 0 for p in pairs)
