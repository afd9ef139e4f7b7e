"""alignctl report JOB against the emulated API server: status.evaluation, the report fetched from its URI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from align_operator.cli import _register, app
from align_operator.client import build, manifest
from align_trainer.evaluation.outputs import write_policy_evaluation
from align_trainer.evaluation.policy_stats import Sample, evaluate_policy

from .emulated_cluster import AJ, EmulatedCluster

pytestmark = pytest.mark.integration
NS = "team-eval"
_register()


@pytest.fixture(scope="module")
def cluster() -> Any:
    with EmulatedCluster() as emulated:
        yield emulated


def _put_job(cluster: EmulatedCluster, name: str, **status: Any) -> None:
    doc = manifest(build(name, algorithm="dpo", model="builtin://tiny", train="data/pref.jsonl",
                         resources={"gpusPerNode": 0}))
    doc["metadata"].update(namespace=NS, generation=1)
    doc["status"] = status
    cluster.put(AJ, NS, name, doc)


def test_report_fetches_the_jobs_report(cluster: EmulatedCluster, tmp_path: Path) -> None:
    out = tmp_path / "volume" / "evaluation"
    samples = [Sample(f"q{i}", "yes", "no", 1.0, 0.0, 1, 1) for i in range(6)]
    write_policy_evaluation(out, "evaluated", samples, evaluate_policy(samples), ["winRate >= 0.55"], {})
    _put_job(cluster, "evaluated", phase="Succeeded", evaluation={"winRate": 1.0},
             artifacts={"report": f"file://{out}/report.md"})
    kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    dest = tmp_path / "fetched"
    result = CliRunner().invoke(app, ["report", "evaluated", "-o", str(dest), "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 0, result.output
    assert "PASS winRate >= 0.55" in result.output and str(dest / "report.md") in result.output
    assert json.loads((dest / "evaluation.json").read_text())["status"]["winRate"] == 1.0
    assert {p.suffix for p in dest.iterdir()} >= {".md", ".json", ".png"}


def test_report_of_a_running_job_and_of_a_missing_one(cluster: EmulatedCluster, tmp_path: Path) -> None:
    _put_job(cluster, "still-running", phase="Running")
    kubeconfig = cluster.kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    running = CliRunner().invoke(app, ["report", "still-running", "-o", str(tmp_path / "x"), "--kubeconfig", str(kubeconfig)])
    assert running.exit_code == 1 and "no evaluation yet (phase Running)" in running.output
    missing = CliRunner().invoke(app, ["report", "no-such-job", "--kubeconfig", str(kubeconfig)])
    assert missing.exit_code == 1 and "not found" in missing.output
