#!/usr/bin/env python3
"""Write the Grafana dashboard JSON the chart ships (charts/align-operator/files/dashboards/align-operator.json).

Panels are declared as data here rather than hand-edited JSON, so every panel has the same shape and the test
suite can check each query with promtool. `--check` exits 1 when the committed file differs (CI drift test).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "charts" / "align-operator" / "files" / "dashboards" / "align-operator.json"

#: Trainer series are selected by these Grafana variables (multi-value, so =~).
SEL = 'namespace=~"$namespace", job=~"$job"'
LEGEND = "{{namespace}}/{{job}}"
#: Logged metrics carry split=train|eval (metrics.py); progress gauges do not.
SPLIT_LEGEND = "{{namespace}}/{{job}} {{split}}"
#: KL has no dedicated gauge: TRL logs it as "objective/kl" (PPO, RLOO, online DPO) or "kl" (GRPO), which the
#: trainer exports as align_trainer_metric{name=...}.
KL = 'align_trainer_metric{name=~"objective_kl|kl", ' + SEL + '}'


def _target(expr: str, legend: str = LEGEND, ref: str = "A") -> dict[str, Any]:
    return {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "expr": expr, "legendFormat": legend,
            "refId": ref}


def _panel(pid: int, title: str, kind: str, targets: list[dict[str, Any]], grid: tuple[int, int, int, int],
           unit: str = "short", description: str = "", decimals: int | None = None) -> dict[str, Any]:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if kind == "timeseries":
        # NaN must stay visible as a gap plus the last finite value, not be interpolated away.
        defaults["custom"] = {"spanNulls": False, "lineWidth": 1, "fillOpacity": 0, "showPoints": "never"}
    if kind == "bargauge":
        defaults.update({"min": 0, "max": 100})
    return {"id": pid, "title": title, "type": kind, "description": description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"x": x, "y": y, "w": w, "h": h}, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {}}


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {"id": pid, "title": title, "type": "row", "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}}


def panels() -> list[dict[str, Any]]:
    rate = "$__rate_interval"
    return [
        _row(1, "Training", 0),
        _panel(2, "Progress", "bargauge",
               [_target(f"100 * align_trainer_step{{{SEL}}} / align_trainer_total_steps{{{SEL}}}")],
               (0, 1, 8, 8), unit="percent", decimals=1, description="Optimizer steps done / planned."),
        _panel(3, "Loss", "timeseries", [_target(f"align_trainer_loss{{{SEL}}}", SPLIT_LEGEND)], (8, 1, 16, 8),
               description="Training loss as the trainer reports it (NaN shows as a gap; see AlignTrainingDiverged)."),
        _panel(4, "Reward margin (chosen - rejected)", "timeseries",
               [_target(f"align_trainer_rewards_margins{{{SEL}}}", SPLIT_LEGEND)], (0, 9, 12, 8),
               description="Preference algorithms: mean implicit reward of chosen minus rejected completions."),
        _panel(5, "Reward accuracy", "timeseries", [_target(f"align_trainer_rewards_accuracies{{{SEL}}}", SPLIT_LEGEND)],
               (12, 9, 12, 8), unit="percentunit",
               description="Fraction of pairs whose chosen completion has the higher implicit reward."),
        _panel(6, "KL to the reference", "timeseries", [_target(KL, SPLIT_LEGEND)],
               (0, 17, 12, 8), description="KL(policy || reference): how far the policy drifted."),
        _panel(7, "Throughput", "timeseries", [_target(f"align_trainer_tokens_per_second{{{SEL}}}", SPLIT_LEGEND)],
               (12, 17, 12, 8), unit="short", description="Tokens per second processed by the trainer."),
        _panel(8, "Step", "timeseries", [_target(f"align_trainer_step{{{SEL}}}", ref="A"),
                                         _target(f"align_trainer_total_steps{{{SEL}}}", f"{LEGEND} total", "B")],
               (0, 25, 24, 6), description="Optimizer step and total steps."),
        _row(9, "Operator", 31),
        _panel(10, "AlignmentJobs by phase", "timeseries",
               [_target("sum by (phase) (align_operator_jobs)", "{{phase}}")], (0, 32, 12, 8),
               description="Jobs per phase (Pending, Waiting, Queued, Running, Suspended, Succeeded, Failed)."),
        _panel(11, "Reconcile latency", "timeseries",
               [_target(f"histogram_quantile(0.5, sum by (le) (rate(align_operator_reconcile_duration_seconds_bucket[{rate}])))", "p50", "A"),
                _target(f"histogram_quantile(0.99, sum by (le) (rate(align_operator_reconcile_duration_seconds_bucket[{rate}])))", "p99", "B")],
               (12, 32, 12, 8), unit="s"),
        _panel(12, "Reconcile errors", "timeseries",
               [_target(f"sum by (reason) (rate(align_operator_errors_total[{rate}]))", "{{reason}}")],
               (0, 40, 12, 8), unit="ops", description="Errors per second by reason."),
        _panel(13, "Operator up", "stat", [_target('sum(up{job="align-operator"})', "up")], (12, 40, 12, 8),
               description="Healthy scrapes of the operator (1 when running)."),
    ]


def _variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": f"{name}-query"}, "definition": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*", "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def dashboard() -> dict[str, Any]:
    return {
        "uid": "align-operator", "title": "align-operator: training and operator", "schemaVersion": 39,
        "version": 1, "editable": True, "graphTooltip": 1, "refresh": "30s", "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"}, "tags": ["align-operator", "llm", "training"],
        "annotations": {"list": []}, "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            _variable("namespace", "label_values(align_trainer_step, namespace)", "Namespace"),
            _variable("job", 'label_values(align_trainer_step{namespace=~"$namespace"}, job)', "AlignmentJob"),
        ]},
        "panels": panels(),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed dashboard differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)} is out of date: run python scripts/gen_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
