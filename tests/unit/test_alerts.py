"""Alert rules: promtool check and unit tests (deploy/prometheus/alerts.test.yaml), one firing test per alert,
and every metric the rules read is one the trainer or the operator exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "align-operator" / "files" / "alerts.yaml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: scripts/setup.sh installs Debian's prometheus")

#: Operator metrics named in the operator's design (align_operator exports them on its /metrics port).
OPERATOR_METRICS = {"align_operator_jobs", "align_operator_reconcile_duration_seconds", "align_operator_errors_total"}


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def trainer_metric_names() -> set[str]:
    from align_trainer import metrics

    names = {metrics.PREFIX + n for n in metrics.NAMED.values()} | {metrics.PREFIX + n for n in metrics.PROGRESS}
    return names | {metrics.PREFIX + "metric", metrics.PREFIX + "up"}


def referenced_metrics(expr: str) -> set[str]:
    """align_* metric names in a PromQL expression, histogram suffixes folded into the family name."""
    names = set(re.findall(r"\balign_[a-z0-9_]+", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


@needs_promtool
def test_promtool_check_rules() -> None:
    proc = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in proc.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    proc = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                          check=False, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == ["../../charts/align-operator/files/alerts.yaml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names == {"AlignOperatorDown", "AlignOperatorReconcileErrors", "AlignOperatorReconcileSlow",
                     "AlignmentJobFailed", "AlignTrainingDiverged", "AlignTrainingStalled"}
    assert names <= firing, f"alerts never tested firing: {names - firing}"
    assert names <= quiet, f"alerts never tested quiet: {names - quiet}"


def test_alerts_have_severity_summary_and_runbook() -> None:
    docs = (REPO / "docs" / "operations.md").read_text().lower() if (REPO / "docs" / "operations.md").exists() else ""
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        anchor = alert["annotations"]["runbook_url"].rsplit("#", 1)[-1]
        assert anchor == alert["alert"].lower()
        assert f"### {alert['alert'].lower()}" in docs, f"docs/operations.md lacks a runbook for {alert['alert']}"


def test_rules_read_only_metrics_that_exist() -> None:
    known = trainer_metric_names() | OPERATOR_METRICS
    for alert in _alerts():
        unknown = referenced_metrics(alert["expr"]) - known
        assert not unknown, f"{alert['alert']} reads unknown metrics {unknown}"
