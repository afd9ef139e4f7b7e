"""spec.hyperparameters -> TRL config, through each algorithm's real `run(ctx)`: the TRL trainer class is
replaced by one that captures its arguments and stops, so every hyperparameter the spec exposes is checked
to land in the config field TRL reads (set to non-default values, so an ignored setting shows)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

from .rl_support import LETTER_GRADER
from .trainer_support import manifest

pytestmark = pytest.mark.integration


class Captured(Exception):
    pass


def capture(*_: Any, **kwargs: Any) -> None:
    raise Captured(kwargs)


@pytest.fixture()
def context(tmp_path: Path) -> Iterator[Any]:
    """context(algorithm, data, hp) -> a TrainContext built by the trainer's entry point from a manifest."""
    from align_trainer.main import build_context, load_algorithm, load_job
    previous = signal.getsignal(signal.SIGTERM)
    made: list[Any] = []

    def make(algorithm: str, data: str, hp: dict[str, Any]) -> Any:
        grader = LETTER_GRADER if data == "rft.openai.jsonl" else None
        config = manifest(tmp_path, f"{algorithm}-wiring", algorithm, data, hp=hp,
                          **({"grader": grader} if grader else {}))
        job = load_job(config)
        ctx = build_context(job, manifest=config, output=tmp_path / algorithm, metrics_port=None,
                            data_kind=load_algorithm(algorithm).DATA)
        made.append(ctx)
        return ctx
    yield make
    for ctx in made:
        ctx.metrics.close()
    signal.signal(signal.SIGTERM, previous)


def captured_args(monkeypatch: pytest.MonkeyPatch, target: str, algorithm: str, ctx: Any) -> Any:
    from align_trainer.algorithms import load
    module, _, name = target.rpartition(".")
    monkeypatch.setattr(f"{module}.{name}", capture)
    with pytest.raises(Captured) as caught:
        load(algorithm).run(ctx)
    return caught.value.args[0]["args"]


GENERATION = {"numGenerations": 3, "batchSize": 6, "maxCompletionLength": 7, "temperature": 0.7, "topP": 0.9}


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "bnpo"])
def test_grpo_wiring(context: Any, monkeypatch: pytest.MonkeyPatch, loss_type: str) -> None:
    ctx = context("grpo", "rft.openai.jsonl", {**GENERATION, "klCoef": 0.07, "clipRange": 0.15, "numIterations": 3,
                                               "scaleRewards": "batch", "lossType": loss_type})
    args = captured_args(monkeypatch, "trl.GRPOTrainer", "grpo", ctx)
    assert (args.beta, args.epsilon, args.num_iterations, args.scale_rewards, args.loss_type) == \
        (0.07, 0.15, 3, "batch", loss_type)
    assert (args.num_generations, args.max_completion_length, args.temperature, args.top_p) == (3, 7, 0.7, 0.9)
    assert args.disable_dropout  # old log-probs (numIterations > 1) from the network that sampled


def test_grpo_default_loss_is_dapo_and_rloo_wiring(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    args = captured_args(monkeypatch, "trl.GRPOTrainer", "grpo", context("grpo", "rft.openai.jsonl", GENERATION))
    assert args.loss_type == "dapo" and args.scale_rewards == "group"
    ctx = context("rloo", "rft.openai.jsonl", {**GENERATION, "klCoef": 0.03, "clipRange": 0.3, "numIterations": 2})
    args = captured_args(monkeypatch, "trl.RLOOTrainer", "rloo", ctx)
    assert (args.beta, args.epsilon, args.num_iterations, args.num_generations, args.temperature, args.top_p,
            args.max_completion_length, args.disable_dropout) == (0.03, 0.3, 2, 3, 0.7, 0.9, 7, True)


def test_reft_grpo_stage_wiring_and_ppo_stage_choice(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hp = {**GENERATION, "warmupEpochs": 0, "klCoef": 0.02, "scaleRewards": "none", "lossType": "dr_grpo"}
    args = captured_args(monkeypatch, "trl.GRPOTrainer", "reft", context("reft", "rft.openai.jsonl", hp))
    assert (args.beta, args.scale_rewards, args.loss_type, args.num_generations) == (0.02, "none", "dr_grpo", 3)
    from align_trainer.algorithms import ppo
    ctx = context("reft", "rft.openai.jsonl", {**GENERATION, "warmupEpochs": 0, "rlStage": "ppo", "vfCoef": 0.5})
    monkeypatch.setattr(ppo, "train_loop", capture)
    monkeypatch.setattr("trl.GRPOTrainer", None)  # the ppo stage must not build a GRPO trainer
    from align_trainer.algorithms import reft
    with pytest.raises(Captured) as caught:
        reft.run(ctx)
    assert caught.value.args[0]["name"] == "reft" and caught.value.args[0]["model"] is not None


def test_online_dpo_wiring(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context("online-dpo", "rft.openai.jsonl", {"beta": 0.3, "lossType": "ipo", "maxCompletionLength": 5,
                                                     "temperature": 0.6, "topP": 0.8})
    args = captured_args(monkeypatch, "trl.experimental.online_dpo.OnlineDPOTrainer", "online-dpo", ctx)
    assert (args.beta, args.loss_type, args.max_new_tokens, args.temperature, args.top_p) == (0.3, "ipo", 5, 0.6, 0.8)


def test_dpo_family_wiring(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context("dpo", "preference.openai.jsonl", {"beta": 0.25, "lossType": "robust", "labelSmoothing": 0.1,
                                                     "rpoAlpha": 0.7})
    args = captured_args(monkeypatch, "trl.DPOTrainer", "dpo", ctx)
    assert (args.beta, args.loss_type, args.loss_weights, args.label_smoothing) == \
        (0.25, ["robust", "sft"], [1.0, 0.7], 0.1)
    ctx = context("kto", "preference.openai.jsonl", {"beta": 0.2, "lossType": "apo_zero_unpaired",
                                                     "desirableWeight": 1.5, "undesirableWeight": 0.6})
    args = captured_args(monkeypatch, "trl.KTOTrainer", "kto", ctx)
    assert (args.beta, args.loss_type, args.desirable_weight, args.undesirable_weight) == \
        (0.2, "apo_zero_unpaired", 1.5, 0.6)
    ctx = context("cpo", "preference.openai.jsonl", {"beta": 0.4, "lossType": "sigmoid", "labelSmoothing": 0.2,
                                                     "cpoAlpha": 0.3})
    args = captured_args(monkeypatch, "trl.experimental.cpo.CPOTrainer", "cpo", ctx)
    assert (args.beta, args.loss_type, args.label_smoothing, args.cpo_alpha) == (0.4, "sigmoid", 0.2, 0.3)
    ctx = context("simpo", "preference.openai.jsonl", {"beta": 2.5, "simpoGamma": 0.8, "cpoAlpha": 0.0})
    args = captured_args(monkeypatch, "trl.experimental.cpo.CPOTrainer", "simpo", ctx)
    assert (args.beta, args.loss_type, args.simpo_gamma, args.cpo_alpha) == (2.5, "simpo", 0.8, 0.0)
    ctx = context("orpo", "preference.openai.jsonl", {"beta": 0.15})
    assert captured_args(monkeypatch, "trl.experimental.orpo.ORPOTrainer", "orpo", ctx).beta == 0.15


def test_tpo_round_wiring(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from align_trainer.algorithms import tpo
    ctx = context("tpo", "rft.openai.jsonl", {"beta": 0.35, "lossType": "hinge"})
    monkeypatch.setattr("trl.DPOTrainer", capture)
    with pytest.raises(Captured) as caught:
        tpo.dpo_round(ctx, None, [{"prompt": "p", "chosen": "a", "rejected": "b"}], 1)
    args = caught.value.args[0]["args"]
    assert (args.beta, args.loss_type) == (0.35, ["hinge"])
    assert caught.value.args[0]["callbacks"]  # the round runs with the job's divergence/SIGTERM checks


def test_inner_stages_run_with_the_jobs_callbacks(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from align_trainer.algorithms import reft, rlaif
    from align_trainer.callbacks import StageCallback
    ctx = context("reft", "rft.openai.jsonl", {"warmupEpochs": 1})
    monkeypatch.setattr("trl.SFTTrainer", capture)
    with pytest.raises(Captured) as caught:
        reft.warm_up(ctx, None)
    assert any(isinstance(c, StageCallback) for c in caught.value.args[0]["callbacks"])
    monkeypatch.setattr("trl.RewardTrainer", capture)
    with pytest.raises(Captured) as caught:
        rlaif.train_reward_model(ctx, [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert any(isinstance(c, StageCallback) for c in caught.value.args[0]["callbacks"])
