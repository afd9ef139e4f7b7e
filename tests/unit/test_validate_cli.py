"""alignctl validate and the spec's round trips on the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from align_api import AlignmentJob, load_file
from align_operator.cli import _register, app

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(REPO.glob("examples/**/*.yaml"))
JOB_EXAMPLES = [p for p in EXAMPLES if any(d and d.get("kind") == "AlignmentJob" for d in yaml.safe_load_all(p.read_text()))]
_register()
runner = CliRunner()


def test_every_algorithm_has_an_example() -> None:
    algorithms = {job.spec.algorithm.value for path in JOB_EXAMPLES for job in load_file(path)}
    assert {"sft", "reward", "dpo", "kto", "cpo", "simpo", "orpo"} <= algorithms


def test_validate_accepts_the_examples() -> None:
    result = runner.invoke(app, ["validate", *map(str, JOB_EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert "are valid" in result.output


@pytest.mark.parametrize("path", JOB_EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_resolved_defaults_round_trip(path: Path) -> None:
    """The operator mounts the manifest with defaults resolved; the trainer must accept it unchanged."""
    for job in load_file(path):
        resolved = job.to_dict(defaults=True)
        again = AlignmentJob.model_validate(resolved)
        assert again.to_dict(defaults=True) == resolved


def test_validate_reports_every_error_with_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: align.dev/v1alpha1\nkind: AlignmentJob\nmetadata: {name: a}\nspec:\n  algorithm: dpo\n"
        "  model: {base: builtin://tiny}\n  data: {train: {uri: x.jsonl}}\n  hyperparameters:\n    beta: 0\n"
        "---\n"
        "apiVersion: align.dev/v1alpha1\nkind: AlignmentJob\nmetadata: {name: b}\nspec:\n  algorithm: grpo\n"
        "  model: {base: builtin://tiny}\n  data: {train: {uri: x.jsonl}}\n")
    good = REPO / "examples" / "dpo.yaml"
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert f"{bad}:9: spec.hyperparameters.beta" in out
    assert "(document 2): spec.grader" in out and "required" in out
    assert "2 error(s)" in out


def test_validate_rejects_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    result = runner.invoke(app, ["validate", str(broken), str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1
    assert "invalid YAML" in result.output and "cannot read" in result.output
