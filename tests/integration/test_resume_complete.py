"""Resume restores everything: a run interrupted at step k (a real SIGTERM, or a real SIGKILL: resume from the
last checkpoint) and restarted on the same output ends as the uninterrupted run does: the same adapter
parameters, optimizer state, value head, KL coefficient, each rank's RNG streams, grader-health window and
rounds' history in every checkpoint after k, the same final adapter, and the same metrics.jsonl (the
scheduler's position shows in its learning_rate column). One run of each own loop and round-based algorithm
on builtin://tiny, a few steps each; two ranks: test_multirank.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from align_api.constants import ExitCode

from .resume_support import (Recorder, assert_same_run, at_call, differences, final_adapter, killed_in_child,
                             metric_records, point_data_at, run_job, sigterm, small_data)
from .rl_support import LETTER_GRADER, JudgeServer, judge_server, one_thread  # noqa: F401  (fixtures)
from .trainer_support import manifest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: 4 PPO steps of 4 completions (2 prompts x 2) on 8 prompts; the adaptive KL controller moves beta every step.
PPO_HP = {"learningRate": 0.05, "batchSize": 4, "numGenerations": 2, "maxCompletionLength": 4, "temperature": 0.7,
          "maxSteps": 4, "klCoef": 0.05, "adaptiveKl": True, "targetKl": 0.01, "klHorizon": 10}
ROUNDS_HP = {"rounds": 3, "numGenerations": 4, "batchSize": 8, "learningRate": 0.05, "maxCompletionLength": 4,
             "temperature": 0.7, "maxSteps": 2, "maxLength": 96}


def job(tmp_path: Path, name: str, algorithm: str, hp: dict[str, Any], *, data: str = "rft.openai.jsonl",
        rows: int = 8, every: int = 1, **spec: Any) -> Path:
    config = manifest(tmp_path, name, algorithm, data, hp=hp, checkpoints={"everySteps": every, "keep": 10},
                      **{"grader": LETTER_GRADER, **spec})
    return point_data_at(config, small_data(tmp_path, data, rows))


def whole_and_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: Path, owner: Any, hook: str,
                      call: int, *, kill: str | None = None) -> tuple[tuple[Path, Recorder], tuple[Path, Recorder]]:
    """(the uninterrupted run, the run interrupted before the `call`-th call of owner.hook and resumed). `kill`:
    owner.hook as "module:attribute" for a SIGKILL in a child process; else a SIGTERM in this one."""
    with monkeypatch.context() as mp:
        whole = (tmp_path / "whole", Recorder(mp))
        assert run_job(config, whole[0]) == ExitCode.OK
    out = tmp_path / "resumed"
    if kill:  # SIGKILL: nothing saved at the kill; the restart resumes from the last checkpoint
        killed_in_child(config, out, kill, call)
    else:  # SIGTERM: a checkpoint at the current step, exit TRANSIENT
        with monkeypatch.context() as mp:
            at_call(mp, owner, hook, call, sigterm)
            assert run_job(config, out) == ExitCode.TRANSIENT
    with monkeypatch.context() as mp:
        resumed = (out, Recorder(mp))
        assert run_job(config, out) == ExitCode.OK
    return whole, resumed


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_ppo_resumes_its_whole_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kill: bool) -> None:
    from align_trainer.algorithms import ppo
    # SIGTERM during step 2 -> checkpoint-2; SIGKILL during step 4 -> checkpoint-2 (every 2), step 3 logged twice
    config = job(tmp_path, "ppo-resume", "ppo", {**PPO_HP, "maxSteps": 5} if kill else PPO_HP, every=2 if kill else 1)
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, config, ppo, "ppo_step", 4 if kill else 2,
                                       kill="align_trainer.algorithms.ppo:ppo_step" if kill else None)
    state = resumed[1].saved[4 if kill else 3]["state"]  # the pieces compared are there to compare
    assert {"value_head", "optimizer", "kl_beta", "rng", "grader_health"} <= set(state)
    assert state["kl_beta"] != PPO_HP["klCoef"] and len(state["grader_health"][0]["batches"]) == 3
    assert_same_run(whole, resumed, after=2)


def test_rlaif_resumes_its_whole_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       judge_server: JudgeServer) -> None:
    from align_trainer.algorithms import ppo
    config = job(tmp_path, "rlaif-resume", "rlaif", {**PPO_HP, "feedback": "direct"}, grader=judge_server.grader())
    assert_same_run(*whole_and_resumed(tmp_path, monkeypatch, config, ppo, "ppo_step", 2), after=2)


def test_reft_resumes_its_rl_stage_after_the_warm_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from align_trainer.algorithms import ppo
    config = job(tmp_path, "reft-resume", "reft", {**PPO_HP, "rlStage": "ppo", "warmupEpochs": 1})
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, config, ppo, "ppo_step", 2)
    assert_same_run(whole, resumed, after=2)
    assert (resumed[0] / "reft-warmup" / "adapter_config.json").is_file()  # the reference of the resumed stage


@pytest.mark.parametrize("algorithm,kill", [("dpo", False), ("rpo", True)])
def test_rounds_resume_with_their_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: str,
                                          kill: bool) -> None:
    from align_trainer import online
    hp = {**ROUNDS_HP, "roundReference": "previous"} if algorithm == "dpo" else ROUNDS_HP
    config = job(tmp_path, f"{algorithm}-rounds-resume", algorithm, hp)
    # SIGTERM at the end of round 1 (checkpoint-1); SIGKILL at the end of round 2, before its checkpoint
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, config, online, "end_round", 2 if kill else 1,
                                       kill="align_trainer.online:end_round" if kill else None)
    assert len(resumed[1].saved[3]["state"]["history"]) == 3
    assert_same_run(whole, resumed, after=1)


def test_tpo_resumes_with_its_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      judge_server: JudgeServer) -> None:
    from align_trainer import online
    hp = {**ROUNDS_HP, "thoughtPrompt": "Think, then answer after <R>. {query}", "maxLength": 128, "warmupEpochs": 1}
    config = job(tmp_path, "tpo-resume", "tpo", hp, data="tpo.thoughts.jsonl", grader=judge_server.grader())
    assert_same_run(*whole_and_resumed(tmp_path, monkeypatch, config, online, "end_round", 1), after=1)


def test_grpo_resumes_through_our_checkpoints_with_the_grader_health_window(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A TRL trainer: HF restores weights, optimizer, scheduler, RNG and log history; our checkpoint code adds
    the grader-health window (runstate.RUN_STATE_FILE) and cuts metrics.jsonl back to the checkpoint."""
    import json

    from align_trainer.graders.rewards import GraderReward
    hp = {k: v for k, v in PPO_HP.items() if k not in ("adaptiveKl", "targetKl", "klHorizon")}
    config = job(tmp_path, "grpo-resume", "grpo", {**hp, "klCoef": 0.0})
    whole, resumed = whole_and_resumed(tmp_path, monkeypatch, config, GraderReward, "__call__", 2)
    for step in (3,):
        a, b = (json.loads((out / "checkpoints" / f"checkpoint-{step}" / "align_run_state.json").read_text())
                for out, _ in (whole, resumed))
        assert a == b and len(a["grader_health"][0]["batches"]) == 3, (a, b)
    problems = differences(final_adapter(whole[0]), final_adapter(resumed[0]), "final adapter") + \
        differences(metric_records(whole[0]), metric_records(resumed[0]), "metrics.jsonl")
    assert not problems, problems[:10]
