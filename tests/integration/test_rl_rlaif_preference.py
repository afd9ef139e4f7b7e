"""RLAIF preference mode (judge-labelled pairs -> reward model -> PPO): the learned reward model ranks HELD-OUT
judge-labelled pairs above chance, and PPO on it raises the judge's score on held-out prompts, with the judge
called only before training (pairs, baseline) and once after it (the held-out probe), never during PPO.

The judge (a fake OpenAI server) scores a prompt-INDEPENDENT property: the share of lowercase letters in the
answer (builtin://tiny cannot learn prompt-dependent answers in a test's budget)."""

from __future__ import annotations

from pathlib import Path

import pytest

from align_api.constants import ExitCode

from .rl_support import JudgeServer, judge_server, one_thread  # noqa: F401
from .trainer_support import manifest, read_metrics, series

pytestmark = [pytest.mark.integration]
#: the job of bench/tpo_rlaif.py (RLAIF part): temperature 0.25 is low enough for PPO to move builtin://tiny's flat
#: logits and high enough for the initial policy's 8 answers per prompt to differ (0.15: 10 pairs from 48 prompts)
PREFERENCE_HP = {"learningRate": 0.05, "rewardModelLearningRate": 0.01, "rewardModelEpochs": 4, "batchSize": 32,
                 "numGenerations": 8, "maxCompletionLength": 4, "temperature": 0.25, "maxSteps": 12,
                 "numIterations": 4, "feedback": "preference", "seed": 2}
TRAIN_PROMPTS, HELDOUT_PROMPTS = 48, 42


@pytest.mark.slow
def test_rlaif_reward_model_generalises_and_ppo_raises_the_judges_score(tmp_path: Path,
                                                                       judge_server: JudgeServer) -> None:
    from align_trainer.main import run
    config = manifest(tmp_path, "rlaif-pref", "rlaif", "rft.openai.jsonl", eval_="prompts.eval.jsonl",
                      hp=PREFERENCE_HP, grader=judge_server.grader())
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(tmp_path / "out"))
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    records = read_metrics(tmp_path / "out")
    stage = next(r for r in records if "rlaif/rm_heldout_accuracy" in r)
    assert stage["rlaif/pairs"] > TRAIN_PROMPTS, stage  # several disjoint pairs per prompt, not only best vs worst
    assert stage["rlaif/heldout_pairs"] >= 40 and stage["rlaif/rm_heldout_accuracy"] >= 0.65, stage
    final = series(records, "rlaif/final_heldout_score")
    assert final and final[-1] > stage["rlaif/initial_heldout_score"] + 0.03, (stage, final)
    assert len(series(records, "objective/kl")) == PREFERENCE_HP["maxSteps"]
    k = PREFERENCE_HP["numGenerations"]
    assert len(judge_server.seen) == (TRAIN_PROMPTS + 2 * HELDOUT_PROMPTS) * k  # none during PPO


def test_reward_model_rewards_are_centred_per_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from align_trainer.algorithms import rlaif
    from align_trainer.evaluation import scoring
    # prompt a's answers all score ~10 higher than b's: PPO gets only the order within each prompt
    monkeypatch.setattr(scoring, "reward_model_scores", lambda model, tokenizer, texts: [10.0, 12.0, 0.0, 2.0])
    score = rlaif.reward_model_score_fn(SimpleNamespace(tokenizer=SimpleNamespace(eos_token="")), None)  # type: ignore[arg-type]
    scores, metrics = score([{}] * 4, ["a", "a", "b", "b"], ["w", "x", "y", "z"])
    assert scores == [-1.0, 1.0, -1.0, 1.0] and metrics["rewards/reward_model/mean"] == 6.0


def reward_trainer_kwargs(tmp_path: Path, judge_server: JudgeServer, monkeypatch: pytest.MonkeyPatch,
                          hp: dict[str, object], **spec: object) -> dict[str, object]:
    """What rlaif's reward-model stage hands TRL's RewardTrainer (captured: it does not train)."""
    import signal

    from align_trainer.algorithms import rlaif
    from align_trainer.main import build_context, load_job

    class Captured(Exception):
        pass

    def capture(**kwargs: object) -> None:
        raise Captured(kwargs)

    config = manifest(tmp_path, "rlaif-rm", "rlaif", "rft.openai.jsonl", grader=judge_server.grader(),
                      hp={"feedback": "preference", **hp}, **spec)
    previous = signal.getsignal(signal.SIGTERM)
    ctx = build_context(load_job(config), manifest=config, output=tmp_path / "out", metrics_port=None,
                        data_kind=rlaif.DATA)
    monkeypatch.setattr("trl.RewardTrainer", capture)
    try:
        with pytest.raises(Captured) as caught:
            rlaif.train_reward_model(ctx, [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    finally:
        ctx.metrics.close()
        signal.signal(signal.SIGTERM, previous)
    return caught.value.args[0]  # type: ignore[no-any-return]


def test_reward_model_stage_takes_its_epochs_and_learning_rate(tmp_path: Path, judge_server: JudgeServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    args = reward_trainer_kwargs(tmp_path, judge_server, monkeypatch,
                                 {"rewardModelEpochs": 7, "rewardModelLearningRate": 0.003})["args"]
    assert (args.num_train_epochs, args.learning_rate, args.max_steps) == (7, 0.003, -1)  # type: ignore[attr-defined]


def test_reward_model_is_fresh_when_the_policy_starts_from_an_adapter(tmp_path: Path, judge_server: JudgeServer,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # spec.model.adapter.init is the POLICY's causal-LM adapter (e.g. an SFT warm-up): the reward model is a
    # fresh LoRA classifier, not that adapter forced onto a sequence classifier (which crashed in peft)
    import torch
    from align_trainer.main import build_context, load_job
    from align_trainer.algorithms import rlaif
    plain = manifest(tmp_path, "policy", "rlaif", "rft.openai.jsonl", grader=judge_server.grader())
    ctx = build_context(load_job(plain), manifest=plain, output=tmp_path / "p", metrics_port=None, data_kind=rlaif.DATA)
    try:
        model = ctx.models.policy()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.fill_(0.5)
        model.save_pretrained(str(tmp_path / "warm"))
    finally:
        ctx.metrics.close()
    warm = f"file://{tmp_path / 'warm'}"
    model = reward_trainer_kwargs(tmp_path, judge_server, monkeypatch, {},
                                  model={"adapter": {"r": 8, "alpha": 16, "dropout": 0.0, "init": warm}})["model"]
    assert model.peft_config["default"].task_type == "SEQ_CLS", model.peft_config  # type: ignore[attr-defined]
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]  # type: ignore[attr-defined]
    assert lora_b and all(float(p.abs().max()) == 0.0 for p in lora_b)  # a fresh LoRA, not the policy's
