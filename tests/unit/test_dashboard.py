"""The Grafana dashboard: generated (no drift), every query valid PromQL (promtool), reading only metrics that
exist, and covering what operators look at: loss, rewards, margins/accuracies, KL, tokens/s, progress, phases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_alerts import OPERATOR_METRICS, PROMTOOL, needs_promtool, referenced_metrics, trainer_metric_names

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "align-operator" / "files" / "dashboards" / "align-operator.json"
#: Grafana variables replaced by something PromQL parses, so promtool can check the queries.
GRAFANA_VARS = {"$__rate_interval": "1m", "$namespace": ".*", "$job": ".*"}


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_is_generated() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_dashboard.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@needs_promtool
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for i, expr in enumerate(_exprs()):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_queries_read_only_metrics_that_exist() -> None:
    known = trainer_metric_names() | OPERATOR_METRICS
    for expr in _exprs():
        assert referenced_metrics(expr) <= known, expr


def test_dashboard_covers_training_and_operator() -> None:
    used = set().union(*(referenced_metrics(e) for e in _exprs()))
    for metric in ("align_trainer_loss", "align_trainer_rewards_margins", "align_trainer_rewards_accuracies",
                   "align_trainer_tokens_per_second", "align_trainer_step", "align_trainer_total_steps",
                   "align_trainer_metric", "align_operator_jobs", "align_operator_reconcile_duration_seconds",
                   "align_operator_errors_total"):
        assert metric in used, metric
    assert any("objective_kl" in e for e in _exprs())


def test_layout_is_sound() -> None:
    dashboard = _dashboard()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "namespace", "job"]
    assert dashboard["uid"] == "align-operator"


@pytest.mark.parametrize("var", ["namespace", "job"])
def test_variables_come_from_trainer_series(var: str) -> None:
    variable = next(v for v in _dashboard()["templating"]["list"] if v["name"] == var)
    assert "align_trainer_step" in variable["query"]["query"] and variable["multi"] and variable["includeAll"]
