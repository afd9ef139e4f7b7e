"""The pre-publication hook without a model: gates block publication, crashes fail only gated jobs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from align_api import AlignmentJob
from align_trainer.errors import EvaluationGateFailed
from align_trainer.evaluation import hook
from align_trainer.evaluation.outputs import write_policy_evaluation
from align_trainer.evaluation.policy_stats import Sample, evaluate_policy

GRADER = {"type": "string_check", "name": "g", "input": "{{sample.output_text}}", "reference": "yes", "operation": "like"}


def _ctx(tmp_path: Path, gates: list[str], output_uri: str | None = None) -> SimpleNamespace:
    spec: dict[str, Any] = {"algorithm": "dpo", "model": {"base": "builtin://tiny"},
                            "data": {"train": {"uri": "./train.jsonl"}}, "resources": {"gpusPerNode": 0},
                            "evaluation": {"grader": GRADER, "gates": gates}}
    if output_uri:
        spec["output"] = {"uri": output_uri}
    job = AlignmentJob.model_validate({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                                       "metadata": {"name": "j"}, "spec": spec})
    out = tmp_path / "out"
    (out / "final").mkdir(parents=True)
    (out / "final" / "README.md").write_text("# model card\n")
    paths = SimpleNamespace(output_dir=out, final_dir=out / "final", base_dir=tmp_path)
    return SimpleNamespace(spec=job.spec, name="j", hp=job.spec.hyperparameters, paths=paths, output_uri=job.spec.output.uri,
                           metrics=SimpleNamespace(), eval_dataset=None, train_dataset=None)


def _fake_run(win: bool) -> Any:
    def run(ctx: Any, model: Any, out: Path, *, gates: Any = (), **_: Any) -> Any:
        samples = [Sample("q", "a", "b", 1.0 if win else 0.0, 0.5, 1, 1) for _ in range(4)]
        return write_policy_evaluation(out, ctx.name, samples, evaluate_policy(samples), gates, {}, charts=False)
    return run


def test_passing_gates_publish_and_extend_the_model_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, ["winRate >= 0.55"], output_uri=f"file://{tmp_path / 'published'}")
    monkeypatch.setattr(hook, "run", _fake_run(win=True))
    result = SimpleNamespace(extra={})
    hook.after_training(ctx, object(), result)
    assert result.extra["evaluation"]["winRate"] == 1.0
    assert result.extra["evaluation_report"].endswith("/evaluation/report.md")
    assert (tmp_path / "published" / "evaluation" / "evaluation.json").exists()
    card = (ctx.paths.final_dir / "README.md").read_text()
    assert "## Evaluation (policy)" in card and "PASS: winRate >= 0.55" in card


def test_failed_gate_unpublishes_final(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, ["winRate >= 0.55"])
    monkeypatch.setattr(hook, "run", _fake_run(win=False))
    with pytest.raises(EvaluationGateFailed, match=r"winRate >= 0.55: FAILED \(winRate=0\)") as info:
        hook.after_training(ctx, object(), SimpleNamespace(extra={}))
    assert info.value.exit_code == 13 and info.value.reason == "EvaluationGateFailed"
    assert not ctx.paths.final_dir.exists() and (ctx.paths.output_dir / "gate-failed" / "README.md").exists()


def test_a_crash_fails_a_gated_job_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("grader exploded")
    monkeypatch.setattr(hook, "run", boom)
    assert hook.evaluate_before_publish(_ctx(tmp_path / "a", []), object()) is None  # advice: logged, not fatal
    with pytest.raises(RuntimeError, match="grader exploded"):
        hook.evaluate_before_publish(_ctx(tmp_path / "b", ["winRate > 0.5"]), object())


def test_prepare_fails_fast_on_bad_evaluation_prompts(tmp_path: Path) -> None:
    from align_trainer.errors import DataError
    ctx = _ctx(tmp_path, ["winRate > 0.5"])
    ctx.paths.cache_dir = tmp_path / "cache"
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "ok"}\nnot json\n')
    ctx.spec.evaluation.prompts = type(ctx.spec.data.train)(uri="./prompts.jsonl")
    with pytest.raises(DataError, match="prompts.jsonl:2"):
        hook.prepare(ctx)
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "ok"}\n')
    assert hook.prepare(ctx) == []  # valid; no atCheckpoints: no callbacks


def test_prepare_requires_a_grader_when_gated(tmp_path: Path) -> None:
    from align_trainer.errors import ConfigError
    ctx = _ctx(tmp_path, ["winRate > 0.5"])
    ctx.spec.evaluation.grader = None
    with pytest.raises(ConfigError, match="needs a grader"):
        hook.prepare(ctx)
