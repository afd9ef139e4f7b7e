"""alignctl plot JOB: finds metrics.jsonl through the job's status.artifacts on the (emulated) cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from align_operator.cli import _register, app
from align_operator.client import build, manifest

from ..unit.test_plot import png_size, write_dpo_run
from .emulated_cluster import AJ, EmulatedCluster

_register()


@pytest.fixture(scope="module")
def cluster() -> Any:
    with EmulatedCluster() as emulated:
        yield emulated


def put_job(cluster: EmulatedCluster, name: str, status: dict[str, Any]) -> None:
    doc = manifest(build(name, algorithm="dpo", model="builtin://tiny", train="pref.jsonl"))
    doc["status"] = status
    cluster.put(AJ, "default", name, doc)


def test_plot_job_reads_the_metrics_artifact(cluster: EmulatedCluster, tmp_path: Path) -> None:
    run = write_dpo_run(tmp_path / "run")
    put_job(cluster, "plotted", {"phase": "Succeeded", "artifacts": {"metrics": f"file://{run / 'metrics.jsonl'}"}})
    out = tmp_path / "plotted.png"
    result = CliRunner().invoke(app, ["plot", "plotted", "--server", cluster.url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert png_size(out)[0] > 0 and "rewards/margins" in result.stdout


def test_plot_job_without_metrics_fails(cluster: EmulatedCluster, tmp_path: Path) -> None:
    put_job(cluster, "fresh", {"phase": "Pending"})
    result = CliRunner().invoke(app, ["plot", "fresh", "--server", cluster.url])
    assert result.exit_code == 1 and "no metrics artifact yet (phase Pending)" in result.stderr
