"""PPO's pieces against hand-computed values (fast: no model)."""

from __future__ import annotations

import pytest
import torch

from align_trainer.algorithms.ppo import KLController, gae
from align_trainer.online import prompt_batches, whiten


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
    ctl.update(10.0, 1000)                       # far above target: error clipped to +0.2
    assert ctl.beta == pytest.approx(0.1 * (1 + 0.2 * 1000 / 10_000))
    ctl.update(0.0, 1000)
    assert ctl.beta < 0.1 * 1.02


def test_whiten_and_prompt_schedule_resume() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, m)
    assert w[0, 3] == 0 and abs(float(w[0, :3].mean())) < 1e-6
    rows = [{"i": i} for i in range(5)]
    full = [b for _, b in zip(range(6), prompt_batches(rows, 2, seed=1))]
    resumed = [b for _, b in zip(range(3), prompt_batches(rows, 2, seed=1, start_step=3))]
    assert resumed == full[3:]
