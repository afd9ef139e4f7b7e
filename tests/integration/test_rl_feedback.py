"""Online DPO, RLAIF and TPO: a grader or an AI judge (a fake OpenAI-compatible server on loopback) picks what
is better, and the mean reward rises clearly. TPO's judge never sees a thought."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("feedback", ["direct", "preference"])
def test_rlaif_with_an_ai_judge(tmp_path: Path, judge_server: JudgeServer, feedback: str) -> None:
    # preference: the pairs come from the initial policy, whose answers at T=0.15 rarely differ; sample hotter
    temperature = 0.15 if feedback == "direct" else 0.5
    _, records = train(tmp_path, "rlaif", judge_server.grader(),
                       {**FAST, "maxSteps": 10, "feedback": feedback, "temperature": temperature})
    rewards = series(records, "objective/scores" if feedback == "direct" else "rewards/reward_model/mean")
    assert judge_server.seen, "the judge was asked"
    if feedback == "direct":
        first, last = rise(rewards)
        assert last > first + 0.3, rewards
        assert series(records, "rewards/judge/mean")
    else:
        # The judge labelled pairs once, a reward model learned them, PPO ran on it without judge calls.
        # (Reward rise is asserted for `direct`; the distilled reward model of this toy generalises too weakly.)
        calls = len(judge_server.seen)
        stage = next(r for r in records if "rlaif/pairs" in r)
        assert stage["rlaif/pairs"] >= 10 and stage["rlaif/rm_accuracy"] > 0.6, stage
        assert calls == 48 * FAST["numGenerations"]  # every sample of the initial policy once, none during PPO
        assert len(series(records, "objective/kl")) == 10 and len(rewards) == 10


def test_tpo_judges_answers_only_and_reward_rises(tmp_path: Path, judge_server: JudgeServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = tpo.generate_responses

    def with_thoughts(ctx, model, prompts):  # type: ignore[no-untyped-def]
        # the tiny model never writes the separator on its own: give every response a thought to hide
        return [f"SECRET THOUGHT {i}: draft and critique\n{tpo.SEPARATOR}{text}"
                for i, text in enumerate(real(ctx, model, prompts))]

    monkeypatch.setattr(tpo, "generate_responses", with_thoughts)
    out, records = train(tmp_path, "tpo", judge_server.grader(),
                         {**FAST, "numGenerations": 4, "batchSize": 16, "rounds": 3, "maxLength": 128,
                          "thoughtPrompt": "Think, then answer after <R>. {query}"})
    assert judge_server.seen and not any("SECRET" in text or "THOUGHT" in text for text in judge_server.seen)
    logged = [json.loads(line) for line in (out / "tpo" / "round-1.jsonl").read_text().splitlines()]
    assert all(row["thought"].startswith("SECRET THOUGHT") for row in logged)
    rewards = series(records, "reward")
    final = series(records, "tpo/final_reward")[-1]
    assert len(rewards) == 3 and final > rewards[0] + 0.15, (rewards, final)


def test_tpo_split_and_prompt() -> None:
    assert tpo.split_thought("I think... <R> Paris") == ("I think... ", "Paris")
    assert tpo.split_thought("no separator at all") == ("", "no separator at all")
    assert tpo.split_thought("a <R> b <R> c") == ("a <R> b ", "c")
    prompt = tpo.thought_prompt([{"role": "system", "content": "s"}, {"role": "user", "content": "Q?"}], "T: {query}")
    assert prompt == [{"role": "system", "content": "s"}, {"role": "user", "content": "T: Q?"}]
