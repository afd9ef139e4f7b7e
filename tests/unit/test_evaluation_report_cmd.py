"""alignctl report: local directories, jobs whose report is on file:// or s3://, and the failure paths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from align_operator.cli import _register, app, report_cmd
from align_trainer.evaluation.outputs import write_policy_evaluation
from align_trainer.evaluation.policy_stats import Sample, evaluate_policy

_register()  # all command modules, as `alignctl` does: with one command typer would collapse the group
runner = CliRunner()


def _output_dir(path: Path, gates: list[str]) -> Path:
    samples = [Sample(f"q{i}", "yes " * (i % 5 + 1), "no", 1.0 if i % 4 else 0.0, 0.0, i % 5 + 1, 1) for i in range(12)]
    write_policy_evaluation(path, "job-a", samples, evaluate_policy(samples), gates, {}, charts=False)
    return path


def test_report_of_a_directory(tmp_path: Path) -> None:
    out = _output_dir(tmp_path / "out", ["winRate >= 0.55", "lengthRatio < 1"])
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "winRate" in result.output and "PASS" in result.output and "FAIL" in result.output
    assert "report.md" in result.output
    as_json = runner.invoke(app, ["report", str(out / "evaluation.json"), "--json"])
    doc = json.loads(as_json.output)
    assert doc["passed"] is False and doc["status"]["winRate"] == pytest.approx((9 + 0.5 * 3) / 12)


def test_report_of_a_directory_without_evaluation(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "no evaluation.json" in result.output


def _job(report: str | None = None, output: str | None = None, evaluation: dict[str, Any] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Succeeded"}
    if report:
        status["artifacts"] = {"report": report}
    if evaluation:
        status["evaluation"] = evaluation
    return {"metadata": {"name": "job-a"}, "spec": {"output": {"uri": output}} if output else {}, "status": status}


def test_report_of_a_job_fetches_file_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = _output_dir(tmp_path / "out", [])
    monkeypatch.setattr(report_cmd, "load_job", lambda *a: _job(report=f"file://{out}/report.md"))
    dest = tmp_path / "fetched"
    result = runner.invoke(app, ["report", "job-a", "-o", str(dest)])
    assert result.exit_code == 0, result.output
    assert (dest / "report.md").exists() and (dest / "evaluation.json").exists()
    assert "winRate" in result.output


def test_report_uri_defaults_to_output_uri() -> None:
    assert report_cmd.report_uri(_job(output="s3://bucket/jobs/a/")) == "s3://bucket/jobs/a/evaluation/report.md"
    assert report_cmd.report_uri(_job()) is None


def test_report_of_a_job_on_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moto = pytest.importorskip("moto")
    import boto3
    out = _output_dir(tmp_path / "out", ["winRate > 0.5"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with moto.mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        for name in ("report.md", "evaluation.json"):
            s3.upload_file(str(out / name), "models", f"jobs/a/evaluation/{name}")
        monkeypatch.setattr(report_cmd, "load_job", lambda *a: _job(output="s3://models/jobs/a"))
        result = runner.invoke(app, ["report", "job-a", "-o", str(tmp_path / "dl")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dl" / "report.md").exists() and "PASS" in result.output


def test_report_of_a_job_on_a_pvc_shows_status_and_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_cmd, "load_job",
                        lambda *a: _job(output="pvc://models/a", evaluation={"winRate": 0.7, "rewardDelta": 0.2}))
    result = runner.invoke(app, ["report", "job-a", "-o", str(tmp_path / "dl")])
    assert result.exit_code == 0, result.output
    assert "winRate" in result.output and "0.7" in result.output and "kubectl cp" in result.output


def test_report_of_a_job_without_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_cmd, "load_job", lambda *a: {"metadata": {"name": "j"}, "status": {"phase": "Running"}})
    result = runner.invoke(app, ["report", "j", "-o", str(tmp_path / "dl")])
    assert result.exit_code == 1 and "no evaluation yet" in result.output


def test_report_of_an_unknown_name_without_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    result = runner.invoke(app, ["report", "no-such-job"])
    assert result.exit_code == 1 and "kubeconfig" in result.output
