"""Each algorithm's loss, as the trainer runs it (TRL's code, configured by our modules), against an
independent computation of the paper's formula on fixed log-probabilities (plain `math`, no torch).

TRL's loss code lives inside trainer methods; they are called here on a minimal stand-in for the trainer
(only the attributes the loss reads) and a stub model that returns fixed per-token log-probs.
"""

from __future__ import annotations

import math
import types
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from align_api.hyperparameters import Hyperparameters
from align_trainer.algorithms.dpo import loss_settings


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


class Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather(x: Any) -> Any:
        return x

    gather_for_metrics = gather

    @staticmethod
    def unwrap_model(m: Any) -> Any:
        return m


class StubModel:
    """Returns fixed per-token log-probs (zero where labels are -100, like TRL's fused LM head)."""

    def __init__(self, by_input: dict[int, torch.Tensor]) -> None:
        self.by_input = by_input

    def __call__(self, input_ids: torch.Tensor, **_: Any) -> SimpleNamespace:
        logps = self.by_input[id(input_ids)]
        n, t = logps.shape
        return SimpleNamespace(log_probs=logps, entropy=torch.zeros(n, t), mean_logits=torch.zeros(n, t),
                               is_top1=torch.zeros(n, t, dtype=torch.bool), aux_loss=None)


def trainer_stub(**attrs: Any) -> SimpleNamespace:
    base = dict(model=SimpleNamespace(training=True), accelerator=Accelerator(), aux_loss_enabled=False,
                _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
                args=SimpleNamespace(discopop_tau=0.05, gradient_checkpointing_kwargs=None))
    return SimpleNamespace(**{**base, **attrs})


# --- fixed data: 3 pairs; sequences of 6 tokens, completions of different lengths ---------------------------
LENGTHS_CHOSEN, LENGTHS_REJECTED = [3, 2, 4], [2, 4, 3]
T = 6


def per_token(lengths: list[int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    values = -torch.rand(len(lengths), T - 1, generator=gen) * 2
    mask = torch.tensor([[1 if j >= T - 1 - n else 0 for j in range(T - 1)] for n in lengths], dtype=torch.float)
    return values * mask


POLICY = torch.cat([per_token(LENGTHS_CHOSEN, 1), per_token(LENGTHS_REJECTED, 2)])
REF = torch.cat([per_token(LENGTHS_CHOSEN, 3), per_token(LENGTHS_REJECTED, 4)])
PC, PR = POLICY[:3].sum(1).tolist(), POLICY[3:].sum(1).tolist()       # log pi(y_w|x), log pi(y_l|x)
RC, RR = REF[:3].sum(1).tolist(), REF[3:].sum(1).tolist()             # log pi_ref(...)
COMPLETION_MASK = torch.cat([torch.zeros(6, 1), (POLICY != 0).float()], dim=1)  # token t+1 scored at position t


def dpo_trl_loss(loss_type: str | list[str], beta: float, label_smoothing: float = 0.0,
                 loss_weights: list[float] | None = None) -> float:
    from trl import DPOTrainer
    types_ = [loss_type] if isinstance(loss_type, str) else loss_type
    stub = trainer_stub(precompute_ref_logps=True, ld_alpha=None, f_divergence_type="reverse_kl", loss_types=types_,
                        loss_weights=loss_weights or [1.0] * len(types_), beta=beta, label_smoothing=label_smoothing,
                        use_weighting=False)
    input_ids = torch.zeros(6, T, dtype=torch.long)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones(6, T, dtype=torch.long),
              "completion_mask": COMPLETION_MASK.long(), "ref_chosen_logps": torch.tensor(RC),
              "ref_rejected_logps": torch.tensor(RR)}
    return DPOTrainer._compute_loss(stub, StubModel({id(input_ids): POLICY}), inputs, False).item()


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def deltas() -> list[float]:
    """h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l))"""
    return [(pc - rc) - (pr - rr) for pc, rc, pr, rr in zip(PC, RC, PR, RR)]


BETA = 0.3


def test_dpo_sigmoid_rafailov_eq7() -> None:
    expected = mean([-logsig(BETA * h) for h in deltas()])
    assert dpo_trl_loss("sigmoid", BETA) == pytest.approx(expected, rel=1e-5)


def test_dpo_hinge_slic() -> None:
    expected = mean([max(0.0, 1 - BETA * h) for h in deltas()])
    assert dpo_trl_loss("hinge", BETA) == pytest.approx(expected, rel=1e-5)


def test_dpo_ipo_azar_eq17_length_normalised() -> None:
    # IPO: (h - 1/(2 tau))^2, with TRL's (author-confirmed) per-token normalisation of each log-ratio
    hs = [(pc - rc) / lc - (pr - rr) / lr
          for pc, rc, pr, rr, lc, lr in zip(PC, RC, PR, RR, LENGTHS_CHOSEN, LENGTHS_REJECTED)]
    expected = mean([(h - 1 / (2 * BETA)) ** 2 for h in hs])
    assert dpo_trl_loss("ipo", BETA) == pytest.approx(expected, rel=1e-5)


def test_dpo_robust_chowdhury() -> None:
    eps = 0.2
    expected = mean([((1 - eps) * -logsig(BETA * h) - eps * -logsig(-BETA * h)) / (1 - 2 * eps) for h in deltas()])
    assert dpo_trl_loss("robust", BETA, label_smoothing=eps) == pytest.approx(expected, rel=1e-5)


def test_dpo_bco_pair_and_apo_zero() -> None:
    rw = [BETA * (pc - rc) for pc, rc in zip(PC, RC)]
    rl = [BETA * (pr - rr) for pr, rr in zip(PR, RR)]
    assert dpo_trl_loss("bco_pair", BETA) == pytest.approx(mean([-logsig(a) - logsig(-b) for a, b in zip(rw, rl)]),
                                                          rel=1e-5)
    assert dpo_trl_loss("apo_zero", BETA) == pytest.approx(mean([1 - sig(a) + sig(b) for a, b in zip(rw, rl)]),
                                                          rel=1e-5)


def test_rpo_adds_nll_of_chosen_via_loss_settings() -> None:
    hp = Hyperparameters(beta=BETA, rpo_alpha=0.5)
    settings = loss_settings(hp)
    assert settings["loss_type"] == ["sigmoid", "sft"] and settings["loss_weights"] == [1.0, 0.5]
    chosen_tokens = [v for row in POLICY[:3].tolist() for v in row if v != 0]
    nll = -mean(chosen_tokens)  # mean token NLL of the chosen completions
    expected = mean([-logsig(BETA * h) for h in deltas()]) + 0.5 * nll
    assert dpo_trl_loss(settings["loss_type"], BETA, loss_weights=settings["loss_weights"]) == \
        pytest.approx(expected, rel=1e-5)


def test_dpo_loss_settings_defaults() -> None:
    assert loss_settings(Hyperparameters()) == {"beta": 0.1, "loss_type": ["sigmoid"], "loss_weights": None,
                                                "label_smoothing": 0.0}


# --- KTO ----------------------------------------------------------------------------------------------

def test_kto_ethayarajh_eq7() -> None:
    from trl import KTOTrainer
    labels = [True, False, True, False, False, True]
    policy = torch.cat([per_token(LENGTHS_CHOSEN, 1), per_token(LENGTHS_REJECTED, 2)])
    kl_policy = torch.cat([per_token(LENGTHS_REJECTED, 5), per_token(LENGTHS_CHOSEN, 6)])
    ref = torch.cat([per_token(LENGTHS_CHOSEN, 3), per_token(LENGTHS_REJECTED, 4)]).sum(1)
    ref_kl = torch.cat([per_token(LENGTHS_REJECTED, 7), per_token(LENGTHS_CHOSEN, 8)]).sum(1)
    input_ids, kl_ids = torch.zeros(6, T, dtype=torch.long), torch.ones(6, T, dtype=torch.long)
    wd, wu = 1.5, 0.7
    stub = trainer_stub(calculate_KL=True, precompute_ref_logps=True, loss_type="kto", beta=BETA,
                        desirable_weight=wd, undesirable_weight=wu)
    stub._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, stub)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones(6, T, dtype=torch.long),
             "completion_mask": COMPLETION_MASK.long(), "KL_input_ids": kl_ids,
             "KL_attention_mask": torch.ones(6, T, dtype=torch.long), "KL_completion_mask": COMPLETION_MASK.long(),
             "label": torch.tensor(labels), "ref_logps": ref, "ref_KL_logps": ref_kl}
    got = KTOTrainer._compute_loss(stub, StubModel({id(input_ids): policy, id(kl_ids): kl_policy}), batch, False)

    # z0 = max(0, mean(log pi(y'|x) - log pi_ref(y'|x))) over mismatched pairs; r = log pi(y|x) - log pi_ref(y|x)
    z0 = max(0.0, mean([a - b for a, b in zip(kl_policy.sum(1).tolist(), ref_kl.tolist())]))
    r = [a - b for a, b in zip(policy.sum(1).tolist(), ref.tolist())]
    desirable = [wd * (1 - sig(BETA * (ri - z0))) for ri, y in zip(r, labels) if y]
    undesirable = [wu * (1 - sig(BETA * (z0 - ri))) for ri, y in zip(r, labels) if not y]
    assert got.item() == pytest.approx(mean(desirable + undesirable), rel=1e-5)


# --- CPO / SimPO / ORPO (reference-free) -----------------------------------------------------------------

def cpo_stub(cls: Any, loss_fn: str, logps: tuple[list[float], list[float]], nll: float, **attrs: Any) -> Any:
    stub = trainer_stub(**attrs)
    chosen, rejected = torch.tensor(logps[0]), torch.tensor(logps[1])
    stub.concatenated_forward = lambda model, batch: (chosen, rejected, torch.zeros(3, 2), torch.zeros(3, 2),
                                                      torch.tensor(nll))
    setattr(stub, loss_fn, types.MethodType(getattr(cls, loss_fn), stub))
    return stub


def test_cpo_xu_eq3_plus_nll() -> None:
    from trl.experimental.cpo import CPOTrainer
    nll, alpha = 1.7, 0.8
    stub = cpo_stub(CPOTrainer, "cpo_loss", (PC, PR), nll, beta=BETA, loss_type="sigmoid", label_smoothing=0.0,
                    alpha=0.0, cpo_alpha=alpha)
    loss, metrics = CPOTrainer.get_batch_loss_metrics(stub, None, {}, "train")
    expected = mean([-logsig(BETA * (c - r)) for c, r in zip(PC, PR)]) + alpha * nll
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert metrics["rewards/margins"] == pytest.approx(mean([BETA * (c - r) for c, r in zip(PC, PR)]), rel=1e-5)


def test_simpo_meng_eq6_length_normalised_with_margin() -> None:
    from trl.experimental.cpo import CPOTrainer
    # SimPO's reward is the *average* token log-prob: check TRL's normalisation on fixed logits first
    logits = torch.randn(1, 4, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, 2, 5, 1]])
    got_avg = CPOTrainer.get_batch_logps(logits, labels, average_log_prob=True).item()
    logp = torch.log_softmax(logits, -1)
    expected_avg = mean([logp[0, 0, 2].item(), logp[0, 1, 5].item(), logp[0, 2, 1].item()])
    assert got_avg == pytest.approx(expected_avg, rel=1e-5)

    avg_c = [s / n for s, n in zip(PC, LENGTHS_CHOSEN)]
    avg_r = [s / n for s, n in zip(PR, LENGTHS_REJECTED)]
    beta, gamma = 2.0, 0.5
    stub = cpo_stub(CPOTrainer, "cpo_loss", (avg_c, avg_r), 0.0, beta=beta, loss_type="simpo", label_smoothing=0.0,
                    alpha=0.0, cpo_alpha=0.0, simpo_gamma=gamma)
    loss, _ = CPOTrainer.get_batch_loss_metrics(stub, None, {}, "train")
    expected = mean([-logsig(beta * c - beta * r - gamma) for c, r in zip(avg_c, avg_r)])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_orpo_hong_eq6() -> None:
    from trl.experimental.orpo import ORPOTrainer
    nll, lam = 2.1, 0.25
    avg_c = [s / n for s, n in zip(PC, LENGTHS_CHOSEN)]  # ORPO uses average log-probs, which are < 0
    avg_r = [s / n for s, n in zip(PR, LENGTHS_REJECTED)]
    stub = cpo_stub(ORPOTrainer, "odds_ratio_loss", (avg_c, avg_r), nll, beta=lam)
    loss, metrics = ORPOTrainer.get_batch_loss_metrics(stub, None, {}, "train")

    def log_odds(lp: float) -> float:  # log( P / (1 - P) )
        return lp - math.log(1 - math.exp(lp))
    ratio = [logsig(log_odds(c) - log_odds(r)) for c, r in zip(avg_c, avg_r)]
    assert loss.item() == pytest.approx(nll - lam * mean(ratio), rel=1e-5)
    assert metrics["log_odds_ratio"] == pytest.approx(mean(ratio), rel=1e-5)


# --- reward model ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("center", [None, 0.01])
def test_reward_bradley_terry(center: float | None) -> None:
    from trl import RewardTrainer
    rewards = [0.5, -1.0, 2.0, 0.1, 0.3, -0.4]  # chosen rows first, then rejected
    stub = trainer_stub(args=SimpleNamespace(center_rewards_coefficient=center))
    model = lambda **_: SimpleNamespace(logits=torch.tensor(rewards).unsqueeze(-1))  # noqa: E731
    got = RewardTrainer.compute_loss(stub, model, {"input_ids": torch.zeros(6, 3), "attention_mask": torch.ones(6, 3)})
    rc, rr = rewards[:3], rewards[3:]
    expected = mean([-logsig(c - r) for c, r in zip(rc, rr)])
    if center:
        expected += center * mean([(c + r) ** 2 for c, r in zip(rc, rr)])
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert stub._metrics["train"]["accuracy"] == [pytest.approx(2 / 3)]


# --- SFT ---------------------------------------------------------------------------------------------------

CHAT = [{"role": "system", "content": "s", "weight": 0}, {"role": "user", "content": "q", "weight": 0},
        {"role": "assistant", "content": "no", "weight": 0}, {"role": "user", "content": "again", "weight": 0},
        {"role": "assistant", "content": "yes!", "weight": 1}]


def test_sft_labels_cover_weighted_assistant_turns_only() -> None:
    from align_trainer import builtin
    from align_trainer.algorithms.sft import IGNORE, tokenize_conversation
    tok = builtin.build_tokenizer()
    out = tokenize_conversation(tok, CHAT, completion_only=True, max_length=None)
    trained = tok.decode([t for t, label in zip(out["input_ids"], out["labels"]) if label != IGNORE])
    assert trained == "yes!<|im_end|>\n"
    both = tokenize_conversation(tok, [dict(m, weight=1) if m["role"] == "assistant" else m for m in CHAT],
                                 completion_only=True, max_length=None)
    assert tok.decode([t for t, label in zip(both["input_ids"], both["labels"]) if label != IGNORE]) == \
        "no<|im_end|>\nyes!<|im_end|>\n"
    full = tokenize_conversation(tok, CHAT, completion_only=False, max_length=8)
    assert full["labels"] == full["input_ids"] and len(full["input_ids"]) == 8


def test_sft_loss_is_mean_nll_over_trained_tokens(tmp_path: Any) -> None:
    import datasets
    from trl import SFTConfig, SFTTrainer
    from align_trainer import builtin
    from align_trainer.algorithms.sft import prepare
    tok, model = builtin.build_tokenizer(), builtin.build_model("tiny")
    rows = datasets.Dataset.from_list([{"messages": CHAT}, {"messages": CHAT[1:]}])
    train = prepare(rows, tok, completion_only=True, max_length=256)
    args = SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_length=256)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tok)
    batch = trainer.data_collator([train[0], train[1]])
    got = trainer.compute_loss(model, dict(batch)).item()
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1)
    terms = [-logp[b, t - 1, batch["labels"][b, t]].item()
             for b in range(2) for t in range(1, batch["labels"].shape[1]) if batch["labels"][b, t] != -100]
    assert len(terms) == 2 * len(["y", "e", "s", "!", "<|im_end|>", "\n"])  # the weight-1 answer of each row
    assert got == pytest.approx(mean(terms), rel=1e-4)
