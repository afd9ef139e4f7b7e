"""Online RL raises HELD-OUT reward on a prompt-dependent task, and a broken learning signal does not.

The gold-answer task (gold_support.py): "<word> <key>" -> the next letter in upper case, exact-match grader,
chance 0.25 for any policy that ignores the prompt. All runs start from one shared format-only warm-up (which
samples valid answers at about chance) and are scored on prompts whose words never appear in training.
Thresholds: from bench/rl_heldout.py (3 seeds), with margin; one seed each here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import gold_support as gold
from .rl_support import JudgeServer, one_thread  # noqa: F401  (fixture)
from .trainer_support import series

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SEED = 1
#: held-out reward a working algorithm clears: well above chance (0.25) and the warm-up (~0.15)
LEARNED = 0.4  # measured (3 seeds): 0.53..0.96 after RL; rlaif direct 0.73..0.96 (seed 1: 0.884)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        adapter = gold.warm_up(tmp_path_factory.mktemp("gold-warm"), SEED)
        return adapter, gold.heldout(adapter)
    finally:
        torch.set_num_threads(before)


def test_warm_up_teaches_the_format_not_the_answer(warm: tuple[Path, dict[str, float]]) -> None:
    _, scored = warm
    assert scored["valid"] > 0.6, scored          # mostly "<one answer letter><EOS>"
    assert scored["reward"] < gold.CHANCE + 0.05, scored   # ... but not which one
    assert gold.heldout(None)["reward"] < 0.05    # the bare random model: garbage bytes, no reward


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "ppo", "online-dpo"])
def test_rl_raises_held_out_reward_above_chance(tmp_path: Path, warm: tuple[Path, dict[str, float]],
                                                algorithm: str) -> None:
    adapter, before = warm
    final, records = gold.rl(tmp_path, algorithm, adapter, SEED)
    after = gold.heldout(final, adapter)
    assert after["reward"] > LEARNED and after["reward"] > before["reward"] + 0.2, (before, after)
    assert after["kl"] > 0.05, after  # it moved away from its reference (the warm-up) to get there
    assert series(records, "graders/error_rate" if algorithm != "online-dpo" else "objective/scores")


def test_rlaif_with_a_judge_raises_held_out_reward_above_chance(tmp_path: Path,
                                                                warm: tuple[Path, dict[str, float]]) -> None:
    # feedback: direct; the judge (an OpenAI-compatible fake on loopback) is sent the sample and {{item.answer}}
    # (gold_support.JUDGE_INPUT) and answers 1 when they match: the reward comes only through the judge
    adapter, before = warm
    server = JudgeServer(gold.gold_judge)
    try:
        final, records = gold.rl(tmp_path, "rlaif", adapter, SEED, grader=gold.judge_grader(server))
    finally:
        server.close()
    after = gold.heldout(final, adapter)
    assert after["reward"] > LEARNED and after["reward"] > before["reward"] + 0.2, (before, after)
    assert after["kl"] > 0.05, after
    hp = gold.RL_HP["rlaif"]
    assert len(server.seen) == hp["maxSteps"] * hp["batchSize"]  # every sample of every step, judged
    assert sum("Reference answer:\nB\nAnswer:\n" in m for m in server.seen) > hp["batchSize"], server.seen[:3]
    assert series(records, "graders/error_rate") == [0.0] * hp["maxSteps"]


@pytest.mark.parametrize(("algorithm", "grader", "why"), [
    # the reward ignores the answer: every sample scores 1, nothing to learn from
    ("grpo", {**gold.GOLD_GRADER, "input": "{{item.answer}}"}, "constant"),
    # the reward's sign flipped: wrong answers score 1
    ("ppo", {**gold.GOLD_GRADER, "operation": "ne"}, "inverted"),
])
def test_a_broken_reward_does_not_raise_held_out_reward(tmp_path: Path, warm: tuple[Path, dict[str, float]],
                                                        algorithm: str, grader: dict[str, Any], why: str) -> None:
    adapter, before = warm
    final, _ = gold.rl(tmp_path, algorithm, adapter, SEED, grader=grader)
    after = gold.heldout(final, adapter)
    assert after["reward"] < gold.CHANCE + 0.05, (why, before, after)
