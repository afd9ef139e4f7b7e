"""Each offline algorithm trains builtin://tiny from a manifest to a saved adapter and moves the metric it
exists to move, measured on held-out pairs (eval words never appear in the train files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align_api.constants import ExitCode
from align_trainer.main import run

from .trainer_support import manifest, mean, read_metrics, series

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


def train(tmp_path: Path, algorithm: str, train_file: str, eval_file: str | None, **kw: object) -> tuple[Path, list]:
    config = manifest(tmp_path, f"{algorithm}-test", algorithm, train_file, eval_=eval_file, **kw)
    output = tmp_path / "out"
    # as in a pod: the working directory comes from $ALIGN_OUTPUT_DIR and spec.output.uri (if any) is uploaded to
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    final = output / "final"
    assert (final / "adapter_model.safetensors").is_file() and (final / "adapter_config.json").is_file()
    card = (final / "README.md").read_text()
    assert f"trained with **{algorithm}**" in card and "builtin://tiny" in card
    return output, read_metrics(output)


def rising(values: list[float]) -> bool:
    k = max(1, len(values) // 4)
    return mean(values[-k:]) > mean(values[:k])


def test_sft_loss_falls_on_assistant_tokens_and_merges(tmp_path: Path) -> None:
    out, records = train(tmp_path, "sft", "sft.openai.jsonl", "sft.openai.eval.jsonl",
                         hp={"learningRate": 0.01, "evalSteps": 8},
                         output={"uri": f"file://{tmp_path}/published", "merge": True})
    losses = series(records, "loss")
    assert mean(losses[-3:]) < mean(losses[:3]) - 0.3, losses
    eval_losses = series(records, "eval_loss")
    assert eval_losses[-1] < eval_losses[0], eval_losses
    published = tmp_path / "published"
    assert (published / "adapter" / "adapter_model.safetensors").is_file()
    assert (published / "merged" / "config.json").is_file() and (published / "metrics.jsonl").is_file()
    config = json.loads((published / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "builtin://tiny"  # portable across pods


def test_reward_model_ranks_held_out_pairs(tmp_path: Path) -> None:
    _, records = train(tmp_path, "reward", "pairs.ranked.jsonl", "pairs.ranked.eval.jsonl",
                       hp={"evalSteps": 8})
    assert series(records, "eval_accuracy")[-1] >= 0.8


def test_reward_pairs_longer_than_max_length_are_cut_not_dropped(tmp_path: Path) -> None:
    """Every answer alone is longer than maxLength: TRL's RewardTrainer would drop every pair (and fail with no
    data); the trainer cuts the answers from their start instead (truncation.fit_answers) and trains on all."""
    rows = [{"prompt": f"Question {i}: ", "chosen": "Sure! " + "good " * 20 + "end.",
             "rejected": "Nope! " + "bad " * 20 + "end."} for i in range(8)]
    data = tmp_path / "long-pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, records = train(tmp_path, "reward", str(data), None, hp={"maxLength": 48, "maxSteps": 2, "batchSize": 4})
    assert len(series(records, "loss")) == 2


def test_dpo_accuracy_above_chance_and_margins_rise(tmp_path: Path) -> None:
    _, records = train(tmp_path, "dpo", "preference.openai.jsonl", "preference.openai.eval.jsonl",
                       hp={"evalSteps": 8, "beta": 0.1})
    assert series(records, "eval_rewards/accuracies")[-1] >= 0.8
    assert rising(series(records, "rewards/margins"))
    eval_margins = series(records, "eval_rewards/margins")
    assert eval_margins[-1] > eval_margins[0] > 0


def test_kto_separates_desirable_from_undesirable(tmp_path: Path) -> None:
    _, records = train(tmp_path, "kto", "preference.openai.jsonl", "preference.openai.eval.jsonl",
                       hp={"evalSteps": 8, "beta": 0.1})
    margins = series(records, "eval_rewards/margins")
    assert margins[-1] > 0 and margins[-1] > margins[0]
    assert rising(series(records, "rewards/margins"))


@pytest.mark.parametrize("algorithm, hp", [
    ("cpo", {"beta": 0.1, "cpoAlpha": 1.0}),
    ("simpo", {"beta": 2.0, "simpoGamma": 0.5, "cpoAlpha": 0.0}),
])
def test_reference_free_pairwise(tmp_path: Path, algorithm: str, hp: dict) -> None:
    _, records = train(tmp_path, algorithm, "preference.openai.jsonl", "preference.openai.eval.jsonl",
                       hp={"evalSteps": 8, **hp})
    assert series(records, "eval_rewards/accuracies")[-1] >= 0.8
    assert rising(series(records, "rewards/margins"))


def test_orpo_log_odds_ratio_rises(tmp_path: Path) -> None:
    _, records = train(tmp_path, "orpo", "pairs.ranked.jsonl", "pairs.ranked.eval.jsonl",
                       hp={"evalSteps": 8, "beta": 0.5})
    assert series(records, "eval_rewards/accuracies")[-1] >= 0.8
    ratio = series(records, "eval_log_odds_ratio")
    assert ratio[-1] > ratio[0]
