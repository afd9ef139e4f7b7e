"""Which evaluation a job gets (none, policy vs reference, reward model), and from which rows."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from align_api import AlignmentJob
from align_trainer.errors import ConfigError
from align_trainer.evaluation.runner import evaluation_rows, plan

STRING_CHECK = {"type": "string_check", "name": "has_yes", "input": "{{sample.output_text}}", "reference": "yes",
                "operation": "like"}


def _ctx(algorithm: str, evaluation: dict[str, Any] | None = None, grader: dict[str, Any] | None = None,
         **extra: Any) -> SimpleNamespace:
    spec: dict[str, Any] = {"algorithm": algorithm, "model": {"base": "builtin://tiny"},
                            "data": {"train": {"uri": "./train.jsonl"}}, "resources": {"gpusPerNode": 0}}
    if evaluation is not None:
        spec["evaluation"] = evaluation
    if grader is not None:
        spec["grader"] = grader
    job = AlignmentJob.model_validate({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                                       "metadata": {"name": "j"}, "spec": spec})
    return SimpleNamespace(spec=job.spec, name="j", hp=job.spec.hyperparameters, eval_dataset=None,
                           train_dataset=None, **extra)


def test_dpo_without_a_grader_is_not_evaluated() -> None:
    assert plan(_ctx("dpo")) is None


def test_dpo_with_an_evaluation_grader() -> None:
    p = plan(_ctx("dpo", {"grader": STRING_CHECK, "gates": ["winRate >= 0.55"]}))
    assert p is not None and p.kind == "policy" and p.grader.name == "has_yes"


def test_online_algorithms_use_the_job_grader_by_default() -> None:
    p = plan(_ctx("grpo", grader=STRING_CHECK))
    assert p is not None and p.kind == "policy" and p.grader.type == "string_check"


def test_sft_is_off_unless_enabled() -> None:
    assert plan(_ctx("sft", {"grader": STRING_CHECK, "enabled": False})) is None
    assert plan(_ctx("sft", {"grader": STRING_CHECK, "enabled": True})).kind == "policy"  # type: ignore[union-attr]


def test_sft_default_is_off() -> None:
    from align_api.evaluation import Evaluation
    ctx = _ctx("sft")
    ctx.spec = ctx.spec.model_copy(update={"evaluation": Evaluation(grader=STRING_CHECK)})
    assert plan(ctx) is None


def test_reward_models_are_evaluated_on_pairs() -> None:
    p = plan(_ctx("reward"))
    assert p is not None and p.kind == "reward_model"


def test_scorer_must_match_the_grader() -> None:
    with pytest.raises(ConfigError, match="judge"):
        plan(_ctx("dpo", {"grader": STRING_CHECK, "scorer": "judge"}))
    with pytest.raises(ConfigError, match="reward_model"):
        plan(_ctx("dpo", {"grader": STRING_CHECK, "scorer": "reward_model"}))


def test_evaluation_rows_from_the_train_split_dedupe_and_limit() -> None:
    rows = [{"prompt": f"p{i % 5}", "chosen": "a", "rejected": "b"} for i in range(20)]
    ctx = _ctx("dpo", {"grader": STRING_CHECK, "samples": 3})
    ctx.train_dataset = rows
    ctx.spec.data.eval = None
    p = plan(ctx)
    got, source = evaluation_rows(ctx, p.spec, "policy")  # type: ignore[union-attr]
    assert len(got) == 3 and len({r["prompt"] for r in got}) == 3 and "TRAIN split" in source


def test_evaluation_rows_turn_conversations_into_prompts() -> None:
    ctx = _ctx("dpo", {"grader": STRING_CHECK})
    ctx.eval_dataset = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    got, source = evaluation_rows(ctx, plan(ctx).spec, "policy")  # type: ignore[union-attr]
    assert got == [{"prompt": [{"role": "user", "content": "hi"}]}] and "evalFraction" in source


def test_gauge_names_round_trip_to_status_names() -> None:
    from align_api.evaluation import GATE_METRICS, evaluation_from_metrics
    from align_trainer.evaluation.runner import gauge_name
    names = [*GATE_METRICS, "samples", "refusalRate", "lengthBias", "prefersLongerRate"]
    scraped = {gauge_name(n)[len("align_trainer_"):]: float(i) for i, n in enumerate(names)}
    scraped.update(loss=0.3, rewards_margins=1.0)  # training gauges are not evaluation numbers
    back = evaluation_from_metrics(scraped | {"eval_length_reward_correlation": float("nan")})
    assert set(back) == set(names)
    assert back["winRate"] == 0.0 and back["lengthRewardCorrelation"] is None
