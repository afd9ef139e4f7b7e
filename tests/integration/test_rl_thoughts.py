"""TPO that thinks by itself: a warm-up on the data's written thoughts makes builtin://tiny write
"thought <R> answer" on its own (no injected text), the AI judge (a fake OpenAI server) sees only the answers,
and the judged answer score rises over the rounds on held-out prompts.

The judge scores a prompt-INDEPENDENT property (share of lowercase letters in the answer): builtin://tiny
cannot learn prompt-dependent answers in a test's budget; what is tested here is the thinking machinery.
Sampling at temperature 0.1: the tiny model's logits span about +-1.3 (tied embeddings, std 0.02)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align_api.constants import ExitCode
from align_trainer.algorithms import tpo

from .rl_support import JudgeServer, judge_server, one_thread  # noqa: F401
from .trainer_support import manifest, read_metrics, series

pytestmark = [pytest.mark.integration]
#: the job of bench/tpo_rlaif.py (TPO part); the data: examples/data/generate_thoughts.py
THINKING_HP = {"learningRate": 0.01, "batchSize": 16, "numGenerations": 4, "maxCompletionLength": 10,
               "temperature": 0.1, "rounds": 3, "warmupEpochs": 15, "rpoAlpha": 1.0, "maxLength": 128,
               "maxSteps": 8, "thoughtPrompt": "Think, then answer after <R>. {query}", "seed": 2}


def run_tpo(tmp_path: Path, grader: dict, hp: dict) -> tuple[int, Path]:
    from align_trainer.main import run
    config = manifest(tmp_path, "tpo-thinks", "tpo", "tpo.thoughts.jsonl", eval_="tpo.thoughts.eval.jsonl",
                      hp=hp, grader=grader)
    output = tmp_path / "out"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        return run(["--config", str(config), "--metrics-port", "-1"]), output


@pytest.mark.slow
def test_tpo_policy_writes_its_own_thoughts_and_the_judged_answers_improve(tmp_path: Path,
                                                                          judge_server: JudgeServer) -> None:
    rc, out = run_tpo(tmp_path, judge_server.grader(), THINKING_HP)
    assert rc == ExitCode.OK
    records = read_metrics(out)
    warm = next(r for r in records if "tpo/warmup_loss" in r)
    # before the warm-up the model never writes the separator; after it, it does on its own
    assert warm["tpo/initial_heldout_with_thought"] == 0.0 and warm["tpo/warmup_with_thought"] >= 0.9, warm
    assert min(series(records, "tpo/with_thought")) >= 0.9, series(records, "tpo/with_thought")
    assert min(series(records, "tpo/heldout_with_thought")) >= 0.9, series(records, "tpo/heldout_with_thought")
    # the thoughts are the model's: logged per sample, and every judged text is an answer without them
    logged = [json.loads(line) for line in (out / "tpo" / "round-1.jsonl").read_text().splitlines()]
    assert sum(bool(row["thought"]) for row in logged) >= 0.9 * len(logged)
    judged = [text.split("Answer:\n", 1)[1] for text in judge_server.seen]
    assert judged and not any(tpo.SEPARATOR in text for text in judged)
    assert {row["answer"] for row in logged} <= set(judged)  # the answers reached the judge, not the thoughts
    # the judged answer score on HELD-OUT prompts rises over the rounds, beyond what the warm-up gave
    heldout = series(records, "tpo/heldout_reward")
    assert len(heldout) == 3 and heldout[-1] > warm["tpo/warmup_heldout_reward"] + 0.3, (warm, heldout)


def test_tpo_prompt_longer_than_max_length_is_a_config_error(tmp_path: Path, judge_server: JudgeServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # the default thought prompt is ~290 byte tokens; 96 passes alignctl validate's word-count lower bound,
    # and used to fail inside TRL with "num_samples=0"
    rc, _ = run_tpo(tmp_path, judge_server.grader(), {"maxLength": 96, "rounds": 1, "warmupEpochs": 0})
    assert rc == ExitCode.CONFIG_ERROR
    assert "hyperparameters.maxLength (96)" in caplog.text and "num_samples" not in caplog.text
    assert not judge_server.seen  # rejected before any sampling
