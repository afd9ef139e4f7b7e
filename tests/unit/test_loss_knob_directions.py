"""Every knob that changes a loss moves it in the documented direction, through our wiring: the spec's
Hyperparameters -> the module's pure `loss_settings(hp)` (what run() hands TRL) -> TRL's loss code (or ours) on fixed
log-probabilities. Each test walks several values and asserts strict monotonicity, so a knob that is ignored (the
loss does not move) or whose sign is flipped (it moves the other way) fails.

The knob check (tests/integration/test_knob_wiring.py) shows that a knob reaches the trainer; these show that it
does what docs/algorithms.md says. PPO's knobs (klCoef, clipRange, clipRangeValue, vfCoef, whitenRewards, gamma,
lam, adaptiveKl) are shown on our own loss pieces in tests/unit/test_rl_ppo_pieces.py; GRPO's klCoef and clipRange
(shared with rloo and reft's GRPO stage through grpo.generation_settings) here on TRL's GRPO loss.
"""

from __future__ import annotations

import math
import types
from typing import Any, Callable, Sequence

import pytest
import torch

from align_api.hyperparameters import Hyperparameters
from align_trainer.algorithms import cpo, dpo, grpo, kto, orpo, reward, rpo, simpo

from .test_trainer_losses import (COMPLETION_MASK, Accelerator, LENGTHS_CHOSEN, LENGTHS_REJECTED, T, StubModel, cpo_stub,
                                  per_token, trainer_stub)

# a policy that prefers each chosen answer more than the reference does: every implicit reward gap h > 0
REF = torch.cat([per_token(LENGTHS_CHOSEN, 3), per_token(LENGTHS_REJECTED, 4)])
SHIFT = torch.cat([0.3 * (REF[:3] != 0).float(), -0.2 * (REF[3:] != 0).float()])
POLICY = REF + SHIFT
#: length-normalised log-probs for the reference-free losses, chosen above rejected (positive margins)
AVG_CHOSEN, AVG_REJECTED = [-0.4, -0.9, -0.6], [-1.1, -1.3, -0.8]
NLL = 1.7


def strictly(values: Sequence[float], increasing: bool) -> bool:
    pairs = list(zip(values, values[1:]))
    return all(b > a for a, b in pairs) if increasing else all(b < a for a, b in pairs)


def walk(knob: str, values: Sequence[Any], loss: Callable[[Hyperparameters], float], **fixed: Any) -> list[float]:
    """The loss for each value of hyperparameter `knob` (other fields at `fixed` or their defaults)."""
    return [loss(Hyperparameters(**{**fixed, knob: v})) for v in values]


# --- DPO (and TPO's rounds, which use dpo.loss_settings) ---------------------------------------------------

def dpo_loss(hp: Hyperparameters) -> float:
    from trl import DPOTrainer
    s = dpo.loss_settings(hp)
    stub = trainer_stub(precompute_ref_logps=True, ld_alpha=None, f_divergence_type="reverse_kl",
                        loss_types=s["loss_type"], loss_weights=s["loss_weights"] or [1.0] * len(s["loss_type"]),
                        beta=s["beta"], label_smoothing=s["label_smoothing"], use_weighting=False)
    input_ids = torch.zeros(6, T, dtype=torch.long)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones(6, T, dtype=torch.long),
              "completion_mask": COMPLETION_MASK.long(), "ref_chosen_logps": REF[:3].sum(1),
              "ref_rejected_logps": REF[3:].sum(1)}
    return DPOTrainer._compute_loss(stub, StubModel({id(input_ids): POLICY}), inputs, False).item()


def test_dpo_beta_sharpens_the_loss_of_pairs_already_ranked_right() -> None:
    """-log sigma(beta h) with h > 0: a larger beta (inverse temperature) gives a smaller loss."""
    assert strictly(walk("beta", [0.05, 0.1, 0.5, 2.0], dpo_loss), increasing=False)


def test_dpo_label_smoothing_moves_the_smoothed_losses() -> None:
    """On pairs the policy already ranks right: aot's conservative smoothing (1 - eps)(-log sigma(beta d)) +
    eps(-log sigma(-beta d)) costs more with more label noise; robust DPO's unbiased estimator
    ((1 - eps)(-log sigma(beta h)) - eps(-log sigma(-beta h))) / (1 - 2 eps) costs less (its derivative in eps is
    (a - b) / (1 - 2 eps)^2 < 0 with a = -log sigma(beta h) < b = -log sigma(-beta h))."""
    values = [0.0, 0.1, 0.3, 0.45]
    assert strictly(walk("label_smoothing", values, dpo_loss, beta=0.5, loss_type="aot"), increasing=True)
    assert strictly(walk("label_smoothing", values, dpo_loss, beta=0.5, loss_type="robust"), increasing=False)


def test_dpo_label_smoothing_is_refused_where_trl_ignores_it() -> None:
    """TRL 1.16's sigmoid DPO loss has no smoothing (cDPO's was dropped): the loss does not move, so validation
    refuses the combination instead of ignoring it."""
    from align_api.validate import ManifestError, validate_document
    assert len(set(walk("label_smoothing", [0.0, 0.3], dpo_loss, beta=0.5))) == 1
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"},
           "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "d.jsonl"}},
                    "hyperparameters": {"labelSmoothing": 0.1}}}
    with pytest.raises(ManifestError, match=r"hyperparameters\.labelSmoothing.*lossType 'sigmoid'"):
        validate_document(doc)
    validate_document({**doc, "spec": {**doc["spec"], "hyperparameters": {"labelSmoothing": 0.1, "lossType": "robust"}}})


def test_dpo_rpo_alpha_adds_the_chosen_nll() -> None:
    """rpoAlpha weighs the NLL of the chosen answer (> 0): more weight, more loss."""
    assert strictly(walk("rpo_alpha", [0.0, 0.5, 2.0], dpo_loss), increasing=True)


# --- KTO -----------------------------------------------------------------------------------------------------

def kto_loss(hp: Hyperparameters, labels: Sequence[bool] = (True, False, True, False, False, True)) -> float:
    from trl import KTOTrainer
    s = kto.loss_settings(hp)
    kl_policy = torch.cat([per_token(LENGTHS_REJECTED, 5), per_token(LENGTHS_CHOSEN, 6)])
    ref_kl = torch.cat([per_token(LENGTHS_REJECTED, 7), per_token(LENGTHS_CHOSEN, 8)]).sum(1)
    input_ids, kl_ids = torch.zeros(6, T, dtype=torch.long), torch.ones(6, T, dtype=torch.long)
    stub = trainer_stub(calculate_KL=True, precompute_ref_logps=True, **s)
    stub._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, stub)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones(6, T, dtype=torch.long),
             "completion_mask": COMPLETION_MASK.long(), "KL_input_ids": kl_ids,
             "KL_attention_mask": torch.ones(6, T, dtype=torch.long), "KL_completion_mask": COMPLETION_MASK.long(),
             "label": torch.tensor(list(labels)), "ref_logps": REF.sum(1), "ref_KL_logps": ref_kl}
    return KTOTrainer._compute_loss(stub, StubModel({id(input_ids): POLICY, id(kl_ids): kl_policy}), batch,
                                    False).item()


@pytest.mark.parametrize("knob", ["desirable_weight", "undesirable_weight"])
def test_kto_weights_scale_their_examples_loss(knob: str) -> None:
    """lambda_D and lambda_U weigh the desirable and undesirable terms (each >= 0): a larger weight, more loss."""
    assert strictly(walk(knob, [0.5, 1.0, 2.0, 4.0], kto_loss), increasing=True)


#: the policy's log-ratio is positive on rows 0-2 and negative on rows 3-5 (SHIFT): labelled so, every example
#: sits on its right side of the KL baseline; labelled the other way round, every example on its wrong side
KTO_RIGHT, KTO_WRONG = (True, True, True, False, False, False), (False, False, False, True, True, True)


def test_kto_beta_sharpens_the_value_function() -> None:
    """beta scales the log-ratio inside KTO's sigmoid value: a larger beta, less loss where every example sits on
    its right side of the reference point and more where every one sits on its wrong side."""
    betas = [0.05, 0.1, 0.2, 0.5, 1.0]
    assert strictly(walk("beta", betas, lambda hp: kto_loss(hp, KTO_RIGHT)), increasing=False)
    assert strictly(walk("beta", betas, lambda hp: kto_loss(hp, KTO_WRONG)), increasing=True)


# --- CPO / SimPO / ORPO ----------------------------------------------------------------------------------------

def cpo_family_loss(settings: Callable[[Hyperparameters], dict[str, Any]]) -> Callable[[Hyperparameters], float]:
    def loss(hp: Hyperparameters) -> float:
        from trl.experimental.cpo import CPOTrainer
        stub = cpo_stub(CPOTrainer, "cpo_loss", (AVG_CHOSEN, AVG_REJECTED), NLL,
                        **{"alpha": 0.0, "label_smoothing": 0.0, "simpo_gamma": 0.5, **settings(hp)})
        return CPOTrainer.get_batch_loss_metrics(stub, None, {}, "train")[0].item()
    return loss


def test_cpo_alpha_adds_the_nll_term() -> None:
    assert strictly(walk("cpo_alpha", [0.0, 0.5, 1.0, 3.0], cpo_family_loss(cpo.loss_settings)), increasing=True)


def test_cpo_beta_and_label_smoothing() -> None:
    loss = cpo_family_loss(cpo.loss_settings)
    assert strictly(walk("beta", [0.1, 0.5, 2.0], loss, cpo_alpha=0.0), increasing=False)
    assert strictly(walk("label_smoothing", [0.0, 0.2, 0.4], loss, beta=2.0, cpo_alpha=0.0), increasing=True)


def test_simpo_gamma_is_a_margin_to_beat() -> None:
    """-log sigma(beta (avg_w - avg_l) - gamma): a larger target margin gamma, more loss."""
    assert strictly(walk("simpo_gamma", [0.0, 0.5, 1.0, 3.0], cpo_family_loss(simpo.loss_settings), beta=2.0,
                         cpo_alpha=0.0), increasing=True)


def test_simpo_cpo_alpha_and_beta() -> None:
    loss = cpo_family_loss(simpo.loss_settings)
    assert strictly(walk("cpo_alpha", [0.0, 0.5, 2.0], loss, beta=2.0), increasing=True)
    assert strictly(walk("beta", [0.5, 2.0, 5.0], loss, cpo_alpha=0.0, simpo_gamma=0.1), increasing=False)


def test_orpo_lambda_weighs_the_odds_ratio_term() -> None:
    """L = NLL - lambda log sigma(log odds_w - log odds_l), the second term >= 0: a larger lambda (beta), more loss."""
    def loss(hp: Hyperparameters) -> float:
        from trl.experimental.orpo import ORPOTrainer
        stub = cpo_stub(ORPOTrainer, "odds_ratio_loss", (AVG_CHOSEN, AVG_REJECTED), NLL, **orpo.loss_settings(hp))
        return ORPOTrainer.get_batch_loss_metrics(stub, None, {}, "train")[0].item()
    assert strictly(walk("beta", [0.05, 0.25, 1.0, 4.0], loss), increasing=True)


# --- reward model, RPO -------------------------------------------------------------------------------------------

def test_reward_centering_penalises_off_centre_rewards() -> None:
    from types import SimpleNamespace

    from trl import RewardTrainer
    rewards = [0.5, -1.0, 2.0, 0.1, 0.3, -0.4]  # mean != 0: the centering term is > 0

    def loss(hp: Hyperparameters) -> float:
        stub = trainer_stub(args=SimpleNamespace(**reward.loss_settings(hp)))
        model = lambda **_: SimpleNamespace(logits=torch.tensor(rewards).unsqueeze(-1))  # noqa: E731
        return RewardTrainer.compute_loss(stub, model, {"input_ids": torch.zeros(6, 3),
                                                        "attention_mask": torch.ones(6, 3)}).item()
    assert strictly(walk("center_rewards_coefficient", [None, 0.01, 0.1, 1.0], loss), increasing=True)


@pytest.mark.parametrize("loss_type", rpo.LOSS_TYPES)
def test_rpo_eta_scales_the_gap_the_implicit_gap_settles_at(loss_type: str) -> None:
    """D(beta h || eta gap) is smallest at h = eta gap / beta: a larger eta pulls the pair further apart."""
    def settle(hp: Hyperparameters) -> float:
        s = rpo.loss_settings(hp)
        h = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([h], lr=2.0)
        for _ in range(200):
            opt.zero_grad()
            rpo.rpo_loss(h, torch.tensor([0.3]), beta=hp.beta, eta=s["eta"], loss_type=s["rpo_loss_type"]).sum().backward()
            opt.step()
        return float(h.detach())
    assert strictly(walk("eta", [0.5, 1.0, 2.0], settle, beta=0.5, loss_type=loss_type), increasing=True)


# --- GRPO (and RLOO, reft's GRPO stage: the same generation_settings) -------------------------------------------

class GrpoAccelerator(Accelerator):
    num_processes = 1
    sync_gradients = True

    @staticmethod
    def reduce(x: Any, reduction: str = "sum") -> Any:
        return x


def grpo_loss(hp: Hyperparameters, *, ratio: float) -> float:
    """TRL's GRPO loss (lossType grpo) on 2 completions of 3 tokens, both with advantage +1, each token's
    probability `ratio` times what it was at sampling (pi / pi_old) and the reference's lower."""
    from trl import GRPOConfig, GRPOTrainer
    settings = grpo.grpo_settings(hp)
    config = GRPOConfig(output_dir="/tmp/unused", use_cpu=True, report_to="none",
                        **{**settings, "loss_type": "grpo"})
    logps = torch.full((2, 3), -1.0)
    stub = trainer_stub(args=config, beta=config.beta, epsilon_low=config.epsilon,
                        epsilon_high=config.epsilon_high if config.epsilon_high is not None else config.epsilon,
                        loss_type="grpo", top_entropy_quantile=1.0, off_policy_mask_threshold=None,
                        importance_sampling_level="token", use_vllm=False, current_gradient_accumulation_steps=1,
                        _entropy_bonus_enabled=False, accelerator=GrpoAccelerator(),
                        max_completion_length=config.max_completion_length)
    stub._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros(2, 3), None)
    inputs = {"prompt_ids": torch.zeros(2, 2, dtype=torch.long), "prompt_mask": torch.ones(2, 2, dtype=torch.long),
              "completion_ids": torch.zeros(2, 3, dtype=torch.long), "completion_mask": torch.ones(2, 3),
              "advantages": torch.ones(2), "old_per_token_logps": logps - math.log(ratio),
              "ref_per_token_logps": logps - 0.5}
    return GRPOTrainer._compute_loss(stub, None, inputs).item()


def test_grpo_kl_coef_weighs_the_kl_penalty() -> None:
    """l = -min(rho A, clip(rho) A) + beta KL(pi || pi_ref), KL > 0 here: a larger klCoef (TRL's beta), more loss."""
    assert strictly(walk("kl_coef", [0.0, 0.05, 0.5, 2.0], lambda hp: grpo_loss(hp, ratio=1.0)), increasing=True)


def test_grpo_clip_range_bounds_how_far_a_ratio_counts() -> None:
    """With A > 0 and rho = 1.5 beyond 1 + eps, the surrogate is clipped at (1 + eps) A: a wider clipRange (TRL's
    epsilon) counts more of the ratio, so the loss -(1 + eps) A falls."""
    assert strictly(walk("clip_range", [0.05, 0.1, 0.2, 0.4], lambda hp: grpo_loss(hp, ratio=1.5), kl_coef=0.0),
                    increasing=False)
