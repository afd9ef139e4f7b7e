"""PPO for RLHF (Schulman et al. 2017; Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022), compactly.

TRL removed its PPOTrainer in 1.14, so this is our own loop. Models on one shared base:
  actor     pi_theta   = the policy LoRA adapter ("default")
  critic    V_phi      = a linear value head on the actor's last hidden state (shared trunk)
  reference pi_ref     = the base with adapters off, or a frozen "ref" adapter (spec.model.reference)
  reward    r(x, y)    = spec.grader (a reward_model, or any grader/judge)

Per step: sample y ~ pi_theta(.|x), then
  per-token reward       r_t = -beta * (log pi_theta(y_t|.) - log pi_ref(y_t|.)) + [t = T] * r(x, y)      (Ziegler eq. 2)
  GAE                    delta_t = r_t + gamma V(s_{t+1}) - V(s_t);  A_t = sum_l (gamma lambda)^l delta_{t+l}  (Schulman 2016)
  returns                R_t = A_t + V(s_t)
  clipped surrogate      L_pi = E_t[ max(-A_t rho_t, -A_t clip(rho_t, 1 - eps, 1 + eps)) ],  rho_t = pi/pi_old  (PPO eq. 7)
  clipped value loss     L_V = 1/2 E_t[ max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2) ]
  total                  L = L_pi + vf_coef * L_V, for numIterations epochs over the batch
Adaptive KL (Ziegler et al. 2019, sec. 2.2): beta <- beta * (1 + clip((KL - target) / target, -0.2, 0.2) * n / horizon),
n = completions per step, horizon = klHorizon.
Dropout is off in the policy (as TRL's former PPOTrainer did): the rollout statistics (log pi_old, log pi_ref,
V_old) then come from exactly the network that sampled, and the first epoch starts at rho = 1.

Metrics (TRL's former PPO names): objective/kl, objective/entropy, objective/scores, objective/non_score_reward,
objective/rlhf_reward, objective/beta, policy/approxkl_avg, policy/clipfrac_avg, policy/entropy_avg,
loss/policy_avg, loss/value_avg, val/clipfrac_avg, val/ratio, val/ratio_var, reward, rewards/<grader>/mean,
graders/errors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .. import distributed, online
from ..graders.rewards import GraderReward, batch_metrics, grader_reward, log_failures, row_items
from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PROMPT_ONLY
log = logging.getLogger(__name__)

#: score(rows, prompts, completion texts) -> (scores, extra metrics); the default is spec.grader.
ScoreFn = Callable[[Sequence[dict[str, Any]], Sequence[Any], Sequence[str]], tuple[list[float], dict[str, float]]]


@dataclass
class KLController:
    """Fixed (adaptive=False) or adaptive KL coefficient."""

    beta: float
    adaptive: bool = False
    target: float = 6.0
    horizon: int = 10_000

    def update(self, kl: float, n_samples: int) -> None:
        if self.adaptive:
            error = max(-0.2, min(0.2, (kl - self.target) / self.target))
            self.beta *= 1 + error * n_samples / self.horizon


def gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimation over the completion tokens (mask: 1 on real tokens)."""
    import torch
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0)
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def penalised_rewards(scores: Any, logp: Any, ref_logp: Any, mask: Any, beta: float, whiten: bool) -> tuple[Any, Any, Any]:
    """Per-token rewards r_t = -beta (log pi_old - log pi_ref) + [t = T] r(x, y) (Ziegler eq. 2), whitened
    (scale only) when asked. Returns (rewards, per-token KL, non-score part)."""
    import torch
    kl = (logp - ref_logp) * mask                           # k1 estimator per token
    non_score = -beta * kl
    rewards = non_score.clone()
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(last)), last] += scores        # the score lands on the last completion token
    if whiten:
        rewards = online.whiten(rewards, mask, shift_mean=False)
    return rewards, kl, non_score


def advantages_and_returns(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """GAE advantages (whitened over the batch, as in TRL's former PPO) and the value targets R_t = A_t + V(s_t)."""
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    return online.whiten(advantages, mask), returns


def ppo_losses(logp: Any, old_logp: Any, advantages: Any, values: Any, old_values: Any, returns: Any, mask: Any,
               clip_range: float, clip_range_value: float, vf_coef: float) -> tuple[Any, Any, Any]:
    """(L_pi, L_V, L_pi + vf_coef L_V): PPO's clipped surrogate (eq. 7) and the clipped value loss."""
    import torch
    # padding after EOS is masked out of the mean, but inf * 0 would still be NaN: no ratio there
    ratio = torch.exp(torch.where(mask.bool(), logp - old_logp, torch.zeros_like(logp)))
    pg_losses = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    pg_loss = online.masked_mean(pg_losses, mask)
    v_clipped = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    vf_losses = torch.max((values - returns) ** 2, (v_clipped - returns) ** 2)
    vf_loss = 0.5 * online.masked_mean(vf_losses, mask)
    return pg_loss, vf_loss, pg_loss + vf_coef * vf_loss


def grader_score_fn(reward: GraderReward) -> ScoreFn:
    def score(rows: Sequence[dict[str, Any]], prompts: Sequence[Any], texts: Sequence[str]) -> tuple[list[float], dict[str, float]]:
        results = reward.grader.grade_batch(row_items(rows), list(texts), prompts=list(prompts))
        metrics = batch_metrics(reward.grader, results)
        log_failures(reward.grader, results)
        scores = [r.reward for r in results]
        metrics[f"rewards/{reward.grader.name}/mean"] = sum(scores) / max(1, len(scores))
        return scores, metrics
    return score


def ppo_step(ctx: TrainContext, model: Any, value_head: Any, optimizer: Any, kl_ctl: KLController,
             rows: Sequence[dict[str, Any]], score: ScoreFn) -> dict[str, float]:
    """One rollout + numIterations PPO epochs. Returns the step's metrics."""
    import torch
    hp = ctx.hp
    prompts = [row["prompt"] for row in rows for _ in range(hp.num_generations)]
    texts = [online.prompt_text(ctx.tokenizer, p) for p in prompts]
    rollout = online.generate(distributed.unwrap(model), ctx.tokenizer, texts, max_new_tokens=hp.max_completion_length,
                              temperature=hp.temperature, top_p=hp.top_p, max_prompt_length=hp.max_prompt_length)
    mask = rollout.completion_mask.float()
    scores_list, score_metrics = score([r for r in rows for _ in range(hp.num_generations)], prompts, rollout.texts)
    scores = torch.tensor(scores_list, dtype=torch.float32, device=mask.device)

    with torch.no_grad():
        old_logp, _, hidden = online.token_logprobs(model, rollout, temperature=hp.temperature, with_hidden=True)
        old_values = value_head(hidden.float()).squeeze(-1) * mask
        with online.reference_mode(model):
            ref_logp, _, _ = online.token_logprobs(model, rollout, temperature=hp.temperature)
        rewards, kl, non_score = penalised_rewards(scores, old_logp, ref_logp, mask, kl_ctl.beta, hp.whiten_rewards)
        advantages, returns = advantages_and_returns(rewards, old_values, mask, hp.gamma, hp.lam)

    stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "clip", "vclip", "approxkl", "ent", "ratio", "dev")}
    model.train()
    for _ in range(hp.num_iterations):
        logp, entropy, hidden = online.token_logprobs(model, rollout, temperature=hp.temperature, with_hidden=True)
        values = value_head(hidden.float()).squeeze(-1)
        ratio = torch.exp(logp - old_logp)
        pg_loss, vf_loss, loss = ppo_losses(logp, old_logp, advantages, values, old_values, returns, mask,
                                            hp.clip_range, hp.clip_range_value, hp.vf_coef)
        optimizer.zero_grad()
        loss.backward()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
        optimizer.step()
        with torch.no_grad():
            stats["pg"].append(pg_loss.item())
            stats["vf"].append(vf_loss.item())
            stats["clip"].append(online.masked_mean(((ratio - 1).abs() > hp.clip_range).float(), mask).item())
            stats["vclip"].append(online.masked_mean(((values - old_values).abs() > hp.clip_range_value).float(), mask).item())
            stats["approxkl"].append(0.5 * online.masked_mean((logp - old_logp) ** 2, mask).item())
            stats["ent"].append(online.masked_mean(entropy, mask).item())
            stats["ratio"].append(online.masked_mean(ratio, mask).item())
            stats["dev"].append(((ratio - 1).abs() * mask).max().item())

    mean_kl = kl.sum(1).mean().item()
    ratio_all = torch.tensor(stats["ratio"])
    metrics = {
        "loss": stats["pg"][-1] + hp.vf_coef * stats["vf"][-1],
        "grad_norm": float(grad_norm),
        "reward": scores.mean().item(),
        "reward_std": scores.std().item() if len(scores) > 1 else 0.0,
        "objective/kl": mean_kl,
        "objective/entropy": online.masked_mean(-old_logp, mask).item(),
        "objective/scores": scores.mean().item(),
        "objective/non_score_reward": non_score.sum(1).mean().item(),
        "objective/rlhf_reward": scores.mean().item() + non_score.sum(1).mean().item(),
        "objective/beta": kl_ctl.beta,
        "policy/approxkl_avg": sum(stats["approxkl"]) / len(stats["approxkl"]),
        "policy/clipfrac_avg": sum(stats["clip"]) / len(stats["clip"]),
        "policy/entropy_avg": sum(stats["ent"]) / len(stats["ent"]),
        "entropy": sum(stats["ent"]) / len(stats["ent"]),
        "loss/policy_avg": sum(stats["pg"]) / len(stats["pg"]),
        "loss/value_avg": sum(stats["vf"]) / len(stats["vf"]),
        "val/clipfrac_avg": sum(stats["vclip"]) / len(stats["vclip"]),
        "val/ratio": ratio_all.mean().item(),
        "val/ratio_var": ratio_all.var().item() if len(ratio_all) > 1 else 0.0,
        # the first epoch is on-policy: its ratio must be exactly 1 (rollout statistics from the sampling policy)
        "val/ratio_first_max_dev": stats["dev"][0],
        "policy/clipfrac_first": stats["clip"][0],
        "completions/mean_length": mask.sum(1).mean().item(),
        **score_metrics,
    }
    kl_ctl.update(mean_kl, len(scores))
    return metrics


def enable_gradient_checkpointing(model: Any) -> None:
    """hyperparameters.gradientCheckpointing in our loop, as HF's Trainer does it for TRL's: each decoder layer's
    activations are recomputed in the backward pass (non-reentrant checkpointing; transformers also makes the
    frozen embeddings' output require grad, so the LoRA layers' gradients flow)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def train_loop(ctx: TrainContext, score: ScoreFn, *, name: str = "ppo", model: Any = None,
               bind_reference: Callable[[Any], None] | None = None) -> TrainResult:
    """The PPO loop with checkpoints, SIGTERM and resume; shared by rlaif and reft (which passes its warmed-up
    policy as `model` and makes it the reference with `bind_reference`)."""
    import torch
    hp = ctx.hp
    torch.manual_seed(hp.seed)
    model = model if model is not None else ctx.models.policy()
    (bind_reference or ctx.models.bind_reference)(model)
    online.disable_dropout(model)
    if hp.gradient_checkpointing:  # activations of the training forward recomputed in backward (sampling is unaffected)
        enable_gradient_checkpointing(model)
    hidden_size = model.config.get_text_config().hidden_size if hasattr(model.config, "get_text_config") else model.config.hidden_size
    value_head = torch.nn.Linear(hidden_size, 1).to(next(model.parameters()).device)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
    kl_ctl = KLController(hp.kl_coef, hp.adaptive_kl, hp.target_kl, hp.kl_horizon)
    rows = list(ctx.train_dataset)
    # torchrun: batchSize is per rank (as in TRL); each step's prompts are dealt out over the ranks, gradients
    # of the policy adapter and the value head are averaged by DDP, each rank samples with its own seed
    per_step = online.prompts_per_step(hp) * distributed.world_size()
    total = online.total_steps(hp, len(rows), per_step)
    step, saved = online.resume_state(ctx, model)
    if "value_head" in saved:
        value_head.load_state_dict(saved["value_head"])
        optimizer.load_state_dict(saved["optimizer"])
        kl_ctl.beta = float(saved.get("kl_beta", kl_ctl.beta))
    ddp_model, ddp_value_head = distributed.wrap_ddp(model), distributed.wrap_ddp(value_head)
    if distributed.is_distributed() and not saved.get("rng_restored"):
        torch.manual_seed(distributed.sampling_seed(hp.seed, step))
    metrics: dict[str, float] = {}
    for batch in online.prompt_batches(rows, per_step, hp.seed, start_step=step):
        if step >= total:
            break
        started = time.monotonic()
        for group in optimizer.param_groups:
            group["lr"] = online.learning_rate_at(hp, step, total)
        metrics = ppo_step(ctx, ddp_model, ddp_value_head, optimizer, kl_ctl, distributed.shard(batch), score)
        if distributed.is_distributed():  # every rank logs the same numbers and keeps the same KL coefficient
            metrics = distributed.mean_metrics({**metrics, "objective/next_beta": kl_ctl.beta})
            kl_ctl.beta = metrics.pop("objective/next_beta")
        step += 1
        metrics.update(learning_rate=optimizer.param_groups[0]["lr"], step_time=time.monotonic() - started,
                       epoch=step * per_step / max(1, len(rows)))
        if step % hp.logging_steps == 0 or step == total:
            ctx.metrics.log(metrics, step=step, epoch=metrics["epoch"])
        ctx.metrics.progress(step=step, total_steps=total, epoch=metrics["epoch"])
        state = {"value_head": value_head.state_dict(), "optimizer": optimizer.state_dict(), "kl_beta": kl_ctl.beta}
        if ctx.stop_requested():
            ctx.save_checkpoint(model, step, state)
            raise ctx.interrupted(step)
        if step % ctx.spec.checkpoints.every_steps == 0 and step < total:
            ctx.save_checkpoint(model, step, state)
    distributed.check_in_sync(value_head, "value head")
    return ctx.finish(model, step=step, total_steps=total, metrics=metrics)


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    reward = grader_reward(ctx, judge=judge)
    try:
        return train_loop(ctx, grader_score_fn(reward))
    finally:
        reward.grader.close()
