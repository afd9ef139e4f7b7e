"""Each named piece of our PPO loop against a hand computation on fixed tensors (no model): policy clipping,
value clipping, the value loss's sign and coefficient, GAE (not raw returns), reward and advantage whitening,
the KL penalty's sign and coefficient, the adaptive KL controller's direction and horizon, the learning-rate
schedule. Breaking any one of them by hand makes a test here fail."""

from __future__ import annotations

import math

import pytest
import torch

from align_api.hyperparameters import Hyperparameters
from align_trainer.algorithms.ppo import KLController, advantages_and_returns, penalised_rewards, ppo_losses
from align_trainer.online import learning_rate_at

MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the last position is padding after EOS


def masked_mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def losses(ratios: list[float], advantages: list[float], values: list[float], old_values: list[float],
           returns: list[float], vf_coef: float = 0.3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    logp = torch.tensor([[math.log(r) for r in ratios] + [0.0]], requires_grad=True)
    old = torch.zeros(1, 4)
    pad = lambda xs: torch.tensor([xs + [0.0]])  # noqa: E731
    pg, vf, total = ppo_losses(logp, old, pad(advantages), pad(values), pad(old_values), pad(returns), MASK,
                               clip_range=0.2, clip_range_value=0.5, vf_coef=vf_coef)
    return pg, vf, total, logp


def test_policy_clipping_bounds_the_surrogate_and_stops_its_gradient() -> None:
    # rho = 1.5 with A > 0 and rho = 0.5 with A < 0 are outside [0.8, 1.2] in the direction the advantage pushes
    pg, _, _, logp = losses([1.5, 0.5, 1.1], [1.0, -1.0, 2.0], [0.0] * 3, [0.0] * 3, [0.0] * 3)
    # L = mean_t max(-A rho, -A clip(rho, 0.8, 1.2))
    expected = masked_mean([max(-1.5, -1.2), max(0.5, 0.8), max(-2.2, -2.2)])
    assert pg.item() == pytest.approx(expected, rel=1e-6)
    pg.backward()
    grad = logp.grad[0].tolist()
    assert grad[0] == 0.0 and grad[1] == 0.0          # clipped tokens: no gradient
    assert grad[2] == pytest.approx(-2.0 * 1.1 / 3)   # d(-A rho)/d log pi = -A rho, over 3 tokens


def test_value_clipping_sign_and_coefficient() -> None:
    values, old_values, returns = [2.0, 0.1, -1.0], [0.0, 0.0, 0.0], [1.0, 0.3, 0.0]
    pg, vf, total, _ = losses([1.0] * 3, [0.0] * 3, values, old_values, returns, vf_coef=0.3)
    clipped = [0.5, 0.1, -0.5]  # old + clip(v - old, -0.5, 0.5)
    expected = 0.5 * masked_mean([max((v - r) ** 2, (c - r) ** 2) for v, c, r in zip(values, clipped, returns)])
    assert vf.item() == pytest.approx(expected, rel=1e-6) and vf.item() > 0
    _, vf_far, _, _ = losses([1.0] * 3, [0.0] * 3, [3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.9, 0.0, 0.0])
    # V = 3.0 is 0.1 from R = 2.9, but clipped to 0.5 it is 2.4 away: clipping makes the loss larger (pessimistic)
    assert vf_far.item() == pytest.approx(0.5 * (2.4 ** 2) / 3, rel=1e-6)
    assert total.item() == pytest.approx(pg.item() + 0.3 * vf.item(), rel=1e-6)


def test_value_loss_pulls_values_towards_returns() -> None:
    values = torch.tensor([[0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    returns = torch.tensor([[0.3, -0.2, 0.1, 0.0]])
    _, vf, total = ppo_losses(torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 4), values, torch.zeros(1, 4),
                              returns, MASK, clip_range=0.2, clip_range_value=1.0, vf_coef=2.0)
    total.backward()
    # gradient descent moves V towards R: dL/dV = vf_coef * (V - R) / n  (the 1/2 cancels the square's 2)
    assert values.grad[0, :3].tolist() == pytest.approx([2.0 * -0.3 / 3, 2.0 * 0.2 / 3, 2.0 * -0.1 / 3])


def test_kl_penalty_sign_coefficient_and_score_on_last_token() -> None:
    logp = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5, -3.0], [-0.5, -2.0, -9.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    rewards, kl, non_score = penalised_rewards(torch.tensor([1.0, -2.0]), logp, ref, mask, beta=0.2, whiten=False)
    assert kl.tolist() == [[0.5, -1.0, 0.0, 0.0], [-0.5, 1.0, 0.0, 0.0]]
    # r_t = -beta (log pi - log pi_ref) + score on the last real token: moving away from pi_ref costs reward
    assert rewards.flatten().tolist() == pytest.approx([-0.1, 0.2, 1.0, 0.0, 0.1, -0.2 - 2.0, 0.0, 0.0])
    assert non_score.flatten().tolist() == pytest.approx([-0.1, 0.2, 0.0, 0.0, 0.1, -0.2, 0.0, 0.0])


def test_reward_whitening_scales_without_shifting() -> None:
    logp, ref = torch.zeros(2, 3), torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    raw, _, _ = penalised_rewards(torch.tensor([3.0, -1.0]), logp, ref, mask, beta=0.1, whiten=False)
    white, _, _ = penalised_rewards(torch.tensor([3.0, -1.0]), logp, ref, mask, beta=0.1, whiten=True)
    values = [3.0 if i == (0, 2) else -1.0 if i == (1, 1) else 0.0 for i in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]]
    mean = sum(values) / 5
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 5)
    expected = [(v - mean) / std + mean for v in values]
    got = [white[0, 0], white[0, 1], white[0, 2], white[1, 0], white[1, 1]]
    assert [g.item() for g in got] == pytest.approx(expected, rel=1e-5)
    assert white[1, 2].item() == 0.0 and raw[0, 2].item() == 3.0


def test_gae_not_raw_returns_and_whitened_advantages() -> None:
    rewards = torch.tensor([[0.0, 0.5, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 0.3, 0.0], [0.1, 0.6, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    gamma, lam = 0.9, 0.5
    advantages, returns = advantages_and_returns(rewards, values, mask, gamma, lam)

    def gae_row(r: list[float], v: list[float]) -> list[float]:
        out, last = [0.0] * len(r), 0.0
        for t in reversed(range(len(r))):
            nxt = v[t + 1] if t + 1 < len(r) else 0.0
            last = r[t] + gamma * nxt - v[t] + gamma * lam * last
            out[t] = last
        return out
    a0 = gae_row([0.0, 0.5, 1.0], [0.2, 0.4, 0.3])
    a1 = gae_row([0.0, -1.0], [0.1, 0.6])
    # value targets R_t = A_t + V(s_t) with the GAE advantage (lam = 0.5), not the Monte-Carlo return
    assert returns[0, :3].tolist() == pytest.approx([a + v for a, v in zip(a0, [0.2, 0.4, 0.3])], rel=1e-5)
    assert returns[1, :2].tolist() == pytest.approx([a + v for a, v in zip(a1, [0.1, 0.6])], rel=1e-5)
    flat = a0 + a1
    mean = sum(flat) / 5
    std = math.sqrt(sum((a - mean) ** 2 for a in flat) / 5)
    got = advantages[0, :3].tolist() + advantages[1, :2].tolist()
    assert got == pytest.approx([(a - mean) / std for a in flat], rel=1e-4)
    assert advantages[0, 3].item() == 0.0 and advantages[1, 2].item() == 0.0


def test_adaptive_kl_moves_beta_towards_the_target_at_the_horizon_rate() -> None:
    above = KLController(0.1, adaptive=True, target=1.0, horizon=1000)
    above.update(1.1, 100)                       # 10% above target: beta grows by 0.1 * 100 / 1000
    assert above.beta == pytest.approx(0.1 * (1 + 0.1 * 100 / 1000))
    below = KLController(0.1, adaptive=True, target=1.0, horizon=1000)
    below.update(0.0, 100)                       # far below: error clipped to -0.2, beta shrinks
    assert below.beta == pytest.approx(0.1 * (1 - 0.2 * 100 / 1000))
    fixed = KLController(0.1, adaptive=False, target=1.0, horizon=1000)
    fixed.update(50.0, 100)
    assert fixed.beta == 0.1


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"])
def test_learning_rate_schedule_matches_transformers(scheduler: str) -> None:
    from transformers import get_scheduler
    hp = Hyperparameters(learning_rate=0.01, lr_scheduler=scheduler, warmup_ratio=0.2)
    total = 10
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    extra = {"min_lr_rate": 0.1} if scheduler == "cosine_with_min_lr" else None
    ref = get_scheduler(scheduler, opt, num_warmup_steps=2, num_training_steps=total, scheduler_specific_kwargs=extra)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    got = [learning_rate_at(hp, step, total) for step in range(total)]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[0] == 0.0 or scheduler == "constant"  # warm-up starts from 0 (constant ignores warm-up)
