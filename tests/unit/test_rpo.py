"""algorithm: rpo (Reward-aware Preference Optimization) and iterative dpo/rpo: losses, reward gaps, rounds, spec."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from align_api import AlignmentJob
from align_trainer import preference_rounds, reward_gaps
from align_trainer.algorithms import ALGORITHMS, rpo
from align_trainer.errors import ConfigError, DataError

BETA, ETA = 0.5, 2.0
H = [3.0, -1.0, 0.0, 0.4]      # implicit reward gaps h
GAP = [1.0, 0.5, -0.25, 0.2]    # reward gaps r(y_w) - r(y_l)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def bern_kl(p: float, q: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(q)), written out."""
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


EXPECTED = {
    "bwd_kl": [bern_kl(sig(ETA * g), sig(BETA * h)) for h, g in zip(H, GAP)],  # the report's D[a || b]
    "fwd_kl": [bern_kl(sig(BETA * h), sig(ETA * g)) for h, g in zip(H, GAP)],
    "sq": [(BETA * h - ETA * g) ** 2 for h, g in zip(H, GAP)],
}


@pytest.mark.parametrize("loss_type", rpo.LOSS_TYPES)
def test_each_loss_matches_an_independent_computation(loss_type: str) -> None:
    got = rpo.rpo_loss(torch.tensor(H, dtype=torch.float64), torch.tensor(GAP), beta=BETA, eta=ETA, loss_type=loss_type)
    assert got.tolist() == pytest.approx(EXPECTED[loss_type], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("loss_type", rpo.LOSS_TYPES)
def test_a_larger_reward_gap_pulls_the_implicit_gap_further(loss_type: str) -> None:
    """Gradient descent on h alone: it settles at eta * gap / beta, so a far pair ends further apart than a near
    pair, and a tie (gap 0) is not pushed apart at all. DPO's loss pushes every pair alike (no gap in it)."""
    def settle(gap: float) -> float:
        h = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([h], lr=2.0)
        for _ in range(200):
            opt.zero_grad()
            rpo.rpo_loss(h, torch.tensor([gap]), beta=BETA, eta=ETA, loss_type=loss_type).sum().backward()
            opt.step()
        return float(h.detach())

    near, far, tie = settle(0.1), settle(1.0), settle(0.0)
    assert far > near > 0.2 and far == pytest.approx(ETA * 1.0 / BETA, rel=0.05), (near, far)
    assert near == pytest.approx(ETA * 0.1 / BETA, rel=0.05) and abs(tie) < 1e-4


def test_loss_settings_follow_the_spec() -> None:
    assert rpo.loss_settings(spec("rpo", {"eta": 3, "lossType": "sq"}).spec.hyperparameters) == \
        {"eta": 3.0, "rpo_loss_type": "sq"}
    assert rpo.loss_settings(spec("rpo", {}).spec.hyperparameters) == {"eta": 1.0, "rpo_loss_type": "bwd_kl"}


def test_unknown_loss_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown rpo loss type"):
        rpo.rpo_loss(torch.zeros(1), torch.zeros(1), beta=1, eta=1, loss_type="sigmoid")


def test_rpo_is_in_the_table_and_picks_its_data_kind() -> None:
    from align_trainer.main import data_kind, load_algorithm
    module = load_algorithm("rpo")
    assert ALGORITHMS["rpo"] == "align_trainer.algorithms.rpo"  # type: ignore[index]
    offline, rounds = spec("rpo", {}), spec("rpo", {"rounds": 2}, grader=True)
    assert data_kind(module, offline.spec).value == "preference"
    assert data_kind(module, rounds.spec).value == "prompt_only"
    assert data_kind(load_algorithm("dpo"), spec("dpo", {"rounds": 2}, grader=True).spec).value == "prompt_only"


def test_gap_collator_carries_the_gap() -> None:
    collate = rpo.GapCollator(lambda examples: {"input_ids": torch.zeros(2 * len(examples), 3)})
    batch = collate([{"reward_gap": 0.5}, {"reward_gap": -1.0}])
    assert batch["reward_gap"].tolist() == [0.5, -1.0]


# --- reward gaps -----------------------------------------------------------------------------------------------

def test_gaps_from_columns_and_bad_values() -> None:
    rows = [{"chosen_reward": 2.0, "rejected_reward": 0.5}, {"chosen_reward": 1, "rejected_reward": 1.25}]
    assert reward_gaps.gaps_from_columns(rows, "f.jsonl") == [1.5, -0.25]
    assert reward_gaps.gaps_from_columns([{"prompt": "p"}], "f.jsonl") is None
    with pytest.raises(DataError, match=r"f.jsonl: row 2: field rejected_reward"):
        reward_gaps.gaps_from_columns([rows[0], {"chosen_reward": 1.0}], "f.jsonl")
    with pytest.raises(DataError, match="chosen_reward"):
        reward_gaps.gaps_from_columns([{"chosen_reward": float("nan"), "rejected_reward": 0}], "f.jsonl")


class CountingGrader:
    """Scores an answer by its length; counts calls."""

    name = "length"

    def __init__(self) -> None:
        self.calls = 0

    def grade_batch(self, items: list[dict[str, Any]], answers: list[str], prompts: Any = None) -> list[Any]:
        self.calls += 1
        return [SimpleNamespace(reward=float(len(a)), failed=False, errors={}, details=None) for a in answers]

    def close(self) -> None:
        pass


def test_graded_gaps_are_computed_once_and_cached(tmp_path: Path) -> None:
    job = spec("rpo", {}, grader=True)
    ctx = SimpleNamespace(spec=job.spec, paths=SimpleNamespace(cache_dir=tmp_path))
    rows = [{"prompt": "p", "chosen": "long answer", "rejected": "no"},
            {"prompt": "q", "chosen": [{"role": "assistant", "content": "abc"}],
             "rejected": [{"role": "assistant", "content": "abcdef"}]}]
    grader = CountingGrader()
    reward = SimpleNamespace(grader=grader)
    assert reward_gaps.reward_gaps(ctx, rows, "train", reward=reward) == [9.0, -3.0]
    assert reward_gaps.reward_gaps(ctx, rows, "train", reward=reward) == [9.0, -3.0]
    assert grader.calls == 1, "the second call reads the cache"
    rows[0]["chosen"] = "changed"
    assert reward_gaps.reward_gaps(ctx, rows, "train", reward=reward)[0] == 5.0 and grader.calls == 2


def test_gaps_need_columns_or_a_grader(tmp_path: Path) -> None:
    ctx = SimpleNamespace(spec=spec("rpo", {}).spec, paths=SimpleNamespace(cache_dir=tmp_path))
    with pytest.raises(ConfigError, match="chosen_reward and rejected_reward .* or set spec.grader"):
        reward_gaps.reward_gaps(ctx, [{"prompt": "p", "chosen": "a", "rejected": "b"}], "train")


def test_openai_preference_rows_keep_their_rewards(tmp_path: Path) -> None:
    from align_trainer.formats import convert, parse_row
    from align_trainer.runtime import DataKind
    row = {"input": {"messages": [{"role": "user", "content": "hi"}]},
           "preferred_output": [{"role": "assistant", "content": "hello"}],
           "non_preferred_output": [{"role": "assistant", "content": "go"}], "chosen_reward": 0.9, "rejected_reward": 0.1}
    out = convert([parse_row("openai-preference", row, "f:1")], DataKind.PREFERENCE)[0]
    assert (out["chosen_reward"], out["rejected_reward"]) == (0.9, 0.1)
    del row["chosen_reward"], row["rejected_reward"]
    assert set(convert([parse_row("openai-preference", row, "f:1")], DataKind.PREFERENCE)[0]) == {"prompt", "chosen", "rejected"}


# --- rounds ----------------------------------------------------------------------------------------------------

def test_best_vs_worst_pairs_with_their_gap() -> None:
    prompts = ["p", [{"role": "user", "content": "q"}], "tie", "failed"]
    answers = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]
    scores = [0.5, 0.9, 0.2, 0.1, 0.3, 0.1, 0.4, 0.4, 0.4, float("-inf"), float("-inf"), 0.7]
    pairs, picked = preference_rounds.best_vs_worst(prompts, answers, scores, 3)
    assert picked == [(1, 2), (4, 3)]  # neither the best nor the worst stands first in its group
    assert pairs[0] == {"prompt": "p", "chosen": "b", "rejected": "c", "reward_gap": pytest.approx(0.7)}
    assert pairs[1]["chosen"] == [{"role": "assistant", "content": "e"}] and pairs[1]["reward_gap"] == pytest.approx(0.2)


def test_a_repeated_round_reuses_its_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hp = SimpleNamespace(num_generations=2)
    ctx = SimpleNamespace(hp=hp)
    monkeypatch.setattr(preference_rounds, "sample", lambda ctx, model, prompts, k: ["aa", "b"] * len(prompts))
    grader = CountingGrader()
    rows = [{"prompt": "p1"}, {"prompt": "p2"}]
    first = preference_rounds.round_pairs(ctx, None, SimpleNamespace(grader=grader), rows, 1, tmp_path)  # type: ignore[arg-type]
    monkeypatch.setattr(preference_rounds, "sample", lambda *a: pytest.fail("a repeated round must not sample"))
    again = preference_rounds.round_pairs(ctx, None, SimpleNamespace(grader=grader), rows, 1, tmp_path)  # type: ignore[arg-type]
    assert first == again and grader.calls == 1 and len(first[0]) == 2
    logged = [json.loads(line) for line in (tmp_path / "round-1.jsonl").read_text().splitlines()]
    assert [r["pair"] for r in logged] == ["chosen", "rejected", "chosen", "rejected"]


@pytest.mark.parametrize("reference, moved", [("previous", [2, 3]), ("fixed", [])])
def test_round_reference_moves_only_when_asked(monkeypatch: pytest.MonkeyPatch, reference: str, moved: list[int]) -> None:
    calls: list[int] = []
    trainer = SimpleNamespace(model="m", train=lambda: None, state=SimpleNamespace(log_history=[{"loss": 0.5, "step": 1}]),
                              remove_callback=lambda cb: None)
    ctx = SimpleNamespace(hp=SimpleNamespace(round_reference=reference), models=SimpleNamespace(bind_reference=lambda m: None))
    for round_no in (1, 2, 3):
        monkeypatch.setattr(preference_rounds, "move_reference", lambda model, n=round_no: calls.append(n))
        out = preference_rounds.train_round(ctx, None, [{"prompt": "p"}], round_no,  # type: ignore[arg-type]
                                            lambda *a: trainer)
        assert out == {"loss": 0.5}
    assert calls == moved


def test_move_reference_freezes_a_copy_of_the_policy() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from align_trainer.builtin import materialize
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(materialize("tiny"))),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False))
    preference_rounds.move_reference(model)
    params = dict(model.named_parameters())
    ref = {n: p for n, p in params.items() if ".ref." in n}
    assert ref and all(not p.requires_grad for p in ref.values())
    for name, p in ref.items():
        assert torch.equal(p, params[name.replace(".ref.", ".default.")])
    assert model.active_adapter == "default" and any(p.requires_grad for n, p in params.items() if ".default." in n)
    with torch.no_grad():  # the copy stays put when the policy moves on
        next(p for n, p in params.items() if ".default." in n and "lora_B" in n).add_(1.0)
    assert not all(torch.equal(p, params[n.replace(".ref.", ".default.")]) for n, p in ref.items())


# --- spec ------------------------------------------------------------------------------------------------------

GRADER = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}", "reference": "x", "operation": "eq"}


def spec(algorithm: str, hp: dict[str, Any], *, grader: bool = False, **extra: Any) -> AlignmentJob:
    doc: dict[str, Any] = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"},
                           "spec": {"algorithm": algorithm, "model": {"base": "builtin://tiny", **extra.pop("model", {})},
                                    "data": {"train": {"uri": "t.jsonl"}}, "hyperparameters": hp, **extra}}
    if grader:
        doc["spec"]["grader"] = GRADER
    return AlignmentJob.model_validate(doc)


@pytest.mark.parametrize("algorithm, hp, kwargs, message", [
    ("rpo", {"lossType": "sigmoid"}, {}, "lossType.*allowed: bwd_kl, fwd_kl, sq"),
    ("dpo", {"eta": 2.0}, {}, r"hyperparameters.eta\] is not used by algorithm 'dpo'"),
    ("rpo", {"rounds": 2}, {}, r"\[grader\] is required for iterative rpo"),
    ("dpo", {"temperature": 0.5}, {"grader": True}, "unless hyperparameters.rounds is set"),
    ("rpo", {"roundReference": "fixed"}, {}, "unless hyperparameters.rounds is set"),
    ("dpo", {"rounds": 2}, {"grader": True, "model": {"reference": {"kind": "precomputed"}}}, "not with rounds"),
    ("dpo", {}, {"grader": True}, r"\[grader\] is not used by algorithm 'dpo'"),
])
def test_spec_rejects(algorithm: str, hp: dict[str, Any], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(algorithm, hp, **kwargs)


def test_spec_accepts_and_resolves_round_trip() -> None:
    for job in (spec("rpo", {"eta": 3, "lossType": "sq"}), spec("rpo", {}, grader=True),
                spec("rpo", {}, model={"reference": {"kind": "precomputed"}}),
                spec("dpo", {"rounds": 3, "numGenerations": 8, "roundReference": "fixed"}, grader=True),
                spec("tpo", {}, grader=True)):
        resolved = job.to_dict(defaults=True)
        assert AlignmentJob.model_validate(resolved).to_dict(defaults=True) == resolved
    assert "numGenerations" not in spec("dpo", {}).to_dict(defaults=True)["spec"]["hyperparameters"]
    assert spec("tpo", {}, grader=True).spec.hyperparameters.rounds is None  # tpo's 2 is applied by the trainer


def test_cel_iterative_rounds_need_a_grader() -> None:
    from tests.unit.test_crd import RULES, SPEC, _cel
    rule = RULES[".hyperparameters.rounds"]
    assert not _cel(rule, {**SPEC, "algorithm": "rpo", "hyperparameters": {"rounds": 2}})
    assert _cel(rule, {**SPEC, "algorithm": "rpo", "hyperparameters": {"rounds": 2}, "grader": {"type": "python"}})
    assert _cel(rule, {**SPEC, "algorithm": "rpo"}) and _cel(rule, {**SPEC, "algorithm": "tpo", "hyperparameters": {"rounds": 2}})
