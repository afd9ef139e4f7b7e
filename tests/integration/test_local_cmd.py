"""`alignctl local run` with a stand-in trainer: exit codes and the printed AlignmentJob."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from align_operator.cli import _register, app
from align_operator.cli.local_cmd import absolutize

pytestmark = pytest.mark.integration
_register()

FAKE = f"{sys.executable} -m align_localcluster.fake_trainer --config /etc/align/job.yaml --output /workspace/output"


def write(tmp_path: Path, name: str, exit_code: int = 0, beta: float = 0.1) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "pairs.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
           "metadata": {"name": name, "labels": {"fake.align.dev/exit-code": str(exit_code),
                                                 "fake.align.dev/steps": "2", "fake.align.dev/step-ms": "20"}},
           "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"},
                    "data": {"train": {"uri": "data/pairs.jsonl"}}, "hyperparameters": {"beta": beta},
                    "resources": {"gpusPerNode": 0}}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run(tmp_path: Path, path: Path, *extra: str) -> object:
    return CliRunner().invoke(app, ["local", "run", str(path), "--workdir", str(tmp_path / "wd"),
                                    "--trainer-command", FAKE, "--timeout", "60", *extra])


def test_success_prints_the_final_job_and_exits_zero(tmp_path: Path) -> None:
    result = run(tmp_path, write(tmp_path, "good"), "-o", "json", "--quiet")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"]["phase"] == "Succeeded" and job["status"]["progress"]["percent"] == 100.0
    # Relative data paths were made absolute against the manifest's directory.
    assert job["spec"]["data"]["train"]["uri"] == str(tmp_path / "data" / "pairs.jsonl")


def test_failure_exits_one_and_prints_the_error(tmp_path: Path) -> None:
    result = run(tmp_path, write(tmp_path, "bad", exit_code=12), "-o", "yaml")
    assert result.exit_code == 1
    job = yaml.safe_load(result.stdout[result.stdout.index("apiVersion"):])
    assert job["status"]["lastError"]["reason"] == "Diverged"


def test_invalid_manifest_exits_two_with_the_field(tmp_path: Path) -> None:
    result = run(tmp_path, write(tmp_path, "invalid", beta=-1))
    assert result.exit_code == 2 and "spec.hyperparameters.beta" in result.output


def test_absolutize_only_touches_existing_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("")
    spec = {"a": "d.jsonl", "b": "missing.jsonl", "c": "s3://bucket/x.jsonl", "d": "org/model", "e": ["./d.jsonl"],
            "f": "file://d.jsonl"}
    out = absolutize(spec, tmp_path)
    assert out == {"a": str(tmp_path / "d.jsonl"), "b": "missing.jsonl", "c": "s3://bucket/x.jsonl", "d": "org/model",
                   "e": [str(tmp_path / "d.jsonl")], "f": f"file://{tmp_path / 'd.jsonl'}"}
