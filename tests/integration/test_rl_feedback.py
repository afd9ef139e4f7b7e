"""Online DPO, RLAIF and TPO: a grader or an AI judge (a fake OpenAI-compatible server on loopback) picks what
is better, and the mean reward rises clearly. TPO's own-thought run is in test_rl_thoughts.py, RLAIF's preference
mode in test_rl_rlaif_preference.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from align_trainer.algorithms import tpo

from .rl_support import FAST, LETTER_GRADER, JudgeServer, judge_server, one_thread, rise, train  # noqa: F401
from .trainer_support import series

pytestmark = [pytest.mark.slow, pytest.mark.integration]
PREFERENCE_HP = {k: v for k, v in FAST.items() if k != "numGenerations"}


def test_online_dpo_reward_rises(tmp_path: Path) -> None:
    _, records = train(tmp_path, "online-dpo", LETTER_GRADER, {**PREFERENCE_HP, "batchSize": 16, "maxSteps": 12})
    scores = series(records, "objective/scores")
    first, last = rise(scores)
    assert last > first + 0.3, scores


def test_rlaif_with_an_ai_judge(tmp_path: Path, judge_server: JudgeServer) -> None:
    # feedback: direct; preference mode (pairs -> reward model -> PPO) is tested in test_rl_rlaif_preference.py
    _, records = train(tmp_path, "rlaif", judge_server.grader(), {**FAST, "maxSteps": 10, "feedback": "direct"})
    rewards = series(records, "objective/scores")
    assert judge_server.seen, "the judge was asked"
    first, last = rise(rewards)
    assert last > first + 0.3, rewards
    assert series(records, "rewards/judge/mean")


def test_tpo_split_and_prompt() -> None:
    assert tpo.split_thought("I think... <R> Paris") == ("I think... ", "Paris")
    assert tpo.split_thought("no separator at all") == ("", "no separator at all")
    assert tpo.split_thought("a <R> b <R> c") == ("a <R> b ", "c")
    prompt = tpo.thought_prompt([{"role": "system", "content": "s"}, {"role": "user", "content": "Q?"}], "T: {query}")
    assert prompt == [{"role": "system", "content": "s"}, {"role": "user", "content": "T: Q?"}]
