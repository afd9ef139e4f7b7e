"""PPO's pieces against hand-computed values (fast: no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from align_api.constants import ExitCode
from align_trainer.main import run

from align_trainer.algorithms.ppo import KLController, gae
from align_trainer.online import prompt_batches, whiten

from .rl_support import one_thread  # noqa: F401  (fixture)


def test_gae_matches_the_recursion() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding after EOS
    gamma, lam = 0.9, 0.8
    adv, ret = gae(rewards, values, mask, gamma, lam)
    d2 = 1.0 - 0.3                               # terminal: no bootstrap
    d1 = 0.0 + gamma * 0.3 - 0.4
    d0 = 0.0 + gamma * 0.4 - 0.5
    a2, a1 = d2, d1 + gamma * lam * d2
    a0 = d0 + gamma * lam * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0])
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3, 0.0])


def test_adaptive_kl_controller() -> None:
    fixed = KLController(0.1)
    fixed.update(100.0, 64)
    assert fixed.beta == 0.1
    ctl = KLController(0.1, adaptive=True, target=1.0)
    ctl.update(10.0, 1000)                       # far above target: error clipped to +0.2 (default horizon 10k)
    assert ctl.beta == pytest.approx(0.1 * (1 + 0.2 * 1000 / 10_000))
    before = ctl.beta
    ctl.update(0.0, 1000)
    assert ctl.beta == pytest.approx(before * (1 - 0.2 * 1000 / 10_000))


def test_whiten_and_prompt_schedule_resume() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, m)
    assert w[0, 3] == 0 and abs(float(w[0, :3].mean())) < 1e-6
    rows = [{"i": i} for i in range(5)]
    full = [b for _, b in zip(range(6), prompt_batches(rows, 2, seed=1))]
    resumed = [b for _, b in zip(range(3), prompt_batches(rows, 2, seed=1, start_step=3))]
    assert resumed == full[3:]


@pytest.mark.slow
def test_ppo_default_dropout_is_on_policy_and_schedules_follow_the_spec(tmp_path: Path) -> None:
    """With the spec's default LoRA dropout (0.05), every step's first PPO epoch is on-policy: rho = 1 within
    1e-5 and nothing is clipped (rollout statistics come from the network that sampled). The same run checks
    that the loop follows lrScheduler/warmupRatio and that the adaptive KL controller moves beta towards the
    target at the klHorizon rate."""
    from align_api.hyperparameters import Hyperparameters
    from align_trainer.online import learning_rate_at

    from .rl_support import FAST, LETTER_GRADER
    from .trainer_support import manifest, read_metrics
    hp = {**FAST, "batchSize": 16, "maxSteps": 5, "numIterations": 2, "lrScheduler": "cosine", "warmupRatio": 0.2,
          "adaptiveKl": True, "targetKl": 0.5, "klHorizon": 50}
    config = manifest(tmp_path, "ppo-dropout", "ppo", "rft.openai.jsonl", hp=hp, grader=LETTER_GRADER,
                      model={"adapter": {"r": 8, "alpha": 16}})  # dropout: the spec's default
    assert "dropout" not in yaml.safe_load(config.read_text())["spec"]["model"]["adapter"]
    output = tmp_path / "out"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    records = [r for r in read_metrics(output) if "val/ratio_first_max_dev" in r]
    assert len(records) == 5
    assert all(r["val/ratio_first_max_dev"] < 1e-5 and r["policy/clipfrac_first"] == 0.0 for r in records), records
    assert max(r["policy/approxkl_avg"] for r in records) > 0  # the second epoch did move off-policy
    spec_hp = Hyperparameters.model_validate({**hp, "learningRate": FAST["learningRate"]})
    assert [r["learning_rate"] for r in records] == pytest.approx([learning_rate_at(spec_hp, s, 5) for s in range(5)])
    n = 16  # completions per step
    for now, after in zip(records, records[1:]):
        error = max(-0.2, min(0.2, (now["objective/kl"] - 0.5) / 0.5))
        assert after["objective/beta"] == pytest.approx(now["objective/beta"] * (1 + error * n / 50), rel=1e-6)
    assert records[1]["objective/beta"] < records[0]["objective/beta"]  # KL 0 at the start: below target, beta falls
