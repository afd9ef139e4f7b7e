"""GRPO, RLOO and PPO train builtin://tiny against a grader and the mean reward rises clearly (ReFT: test_rl_reft.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .rl_support import FAST, LETTER_GRADER, one_thread, rise, train  # noqa: F401  (fixture)
from .trainer_support import series

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_trl_policy_gradient_reward_rises(tmp_path: Path, algorithm: str) -> None:
    _, records = train(tmp_path, algorithm, LETTER_GRADER, {**FAST, "maxSteps": 12, "klCoef": 0.0})
    rewards = series(records, "reward")
    first, last = rise(rewards)
    assert last > first + 0.3, rewards
    # per-grader metrics: TRL's own and the grader's error counters
    assert series(records, "rewards/letters/mean") and series(records, "graders/error_rate")[-1] == 0.0


def test_ppo_reward_rises_and_exports_ppo_metrics(tmp_path: Path) -> None:
    _, records = train(tmp_path, "ppo", LETTER_GRADER, {**FAST, "maxSteps": 10, "klCoef": 0.02, "adaptiveKl": True,
                                                        "targetKl": 1.0})
    rewards = series(records, "reward")
    first, last = rise(rewards)
    assert last > first + 0.3, rewards
    for key in ("objective/kl", "val/ratio", "loss/value_avg", "loss/policy_avg", "entropy", "policy/clipfrac_avg",
                "objective/beta"):
        assert series(records, key), key
    assert series(records, "objective/kl")[-1] > 0  # the policy moved away from the reference
    betas = series(records, "objective/beta")
    assert betas[-1] != betas[0]  # the adaptive controller acted


def test_ppo_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from align_api.constants import ExitCode
    from align_trainer.algorithms import ppo
    from align_trainer.main import run

    from .trainer_support import manifest, read_metrics
    output = tmp_path / "out"
    # The same job twice (a changed spec would be another run: align_trainer.identity): the first pod dies after
    # step 4 (checkpoint-4 written), the restarted one continues from it instead of starting over.
    config = manifest(tmp_path, "ppo-resume", "ppo", "rft.openai.jsonl", grader=LETTER_GRADER,
                      hp={**FAST, "batchSize": 16, "maxSteps": 6}, checkpoints={"everySteps": 2, "keep": 1})
    real_step, calls = ppo.ppo_step, []

    def dies_after_four(*args: object, **kwargs: object) -> dict:
        calls.append(1)
        if len(calls) > 4:
            raise RuntimeError("the node went away")
        return real_step(*args, **kwargs)

    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        env.setattr(ppo, "ppo_step", dies_after_four)
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.TRANSIENT
    assert (output / "checkpoints" / "checkpoint-4" / "state.pt").is_file()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    steps_logged = [r["step"] for r in read_metrics(output) if "objective/kl" in r]
    assert steps_logged == [1, 2, 3, 4, 5, 6], steps_logged  # run 2 resumed after step 4, not from step 1
