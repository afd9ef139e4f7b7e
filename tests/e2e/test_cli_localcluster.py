"""alignctl against the local cluster: the real operator, a node agent and a stand-in trainer process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from align_localcluster import LocalCluster
from align_operator.cli import _register, app
from align_operator.client import build, manifest

_register()

#: Stands in for `python -m align_trainer`: prints a few lines; jobs named broken-* exit 11 (a data error).
FAKE_TRAINER = [sys.executable, "-c", """
import os, sys, time
name = os.environ.get("ALIGN_JOB_NAME", "?")
for step in range(1, 4):
    print(f"{name} step {step}/3 loss {1 / step:.3f}", flush=True)
    time.sleep(0.1)
sys.exit(11 if name.startswith("broken") else 0)
"""]


@pytest.fixture(scope="module")
def local() -> Any:
    with LocalCluster(trainer_command=FAKE_TRAINER) as sb:
        yield sb


def cli(sb: LocalCluster, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--kubeconfig", str(sb.kubeconfig)])


def write_job(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(manifest(build(name, algorithm="sft", model="builtin://tiny",
                                                  train="examples/openai/sft_train.jsonl",
                                                  resources={"gpusPerNode": 0}))))
    return path


@pytest.mark.e2e
def test_submit_wait_logs_describe_on_the_local_cluster(local: LocalCluster, tmp_path: Path) -> None:
    submitted = cli(local, "submit", str(write_job(tmp_path, "happy")), "--no-preflight", "--wait", "--timeout", "120")
    assert submitted.exit_code == 0, submitted.output
    assert "happy Succeeded" in submitted.output
    logs = cli(local, "logs", "happy")
    assert logs.exit_code == 0 and "happy step 3/3" in logs.output
    described = cli(local, "describe", "happy")
    assert described.exit_code == 0 and "Succeeded" in described.output and "happy-trainer" in described.output
    listed = cli(local, "get")
    assert "happy" in listed.output and "Succeeded" in listed.output


@pytest.mark.e2e
def test_wait_mirrors_a_failed_trainer(local: LocalCluster, tmp_path: Path) -> None:
    submitted = cli(local, "submit", str(write_job(tmp_path, "broken-data")), "--no-preflight")
    assert submitted.exit_code == 0, submitted.output
    waited = cli(local, "wait", "broken-data", "--timeout", "120")
    assert waited.exit_code == 1, waited.output
    assert "broken-data Failed" in waited.output
