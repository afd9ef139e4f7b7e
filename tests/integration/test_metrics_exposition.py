"""`promtool check metrics` on real scrapes of the trainer's and the operator's /metrics endpoints, and every
metric the alerts and the dashboard read shows up in those scrapes."""

from __future__ import annotations

import importlib
import math
import shutil
import subprocess
import urllib.request
from typing import Any

import pytest

from tests.unit.test_alerts import RULES, referenced_metrics
from tests.unit.test_dashboard import _exprs as dashboard_exprs

PROMTOOL = shutil.which("promtool")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: scripts/setup.sh installs it")]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, check=False)


def families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def used_by_alerts_and_dashboard(prefix: str) -> set[str]:
    import yaml

    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]] + dashboard_exprs()
    return {m for e in exprs for m in referenced_metrics(e) if m.startswith(prefix)}


def test_trainer_endpoint_passes_promtool_and_serves_what_alerts_read() -> None:
    from align_trainer.errors import Diverged
    from align_trainer.metrics import Metrics

    metrics = Metrics("dpo-run", None, port=0)
    try:
        metrics.progress(step=3, total_steps=10, epoch=0.3)
        metrics.log({"loss": 0.69, "rewards/margins": 0.12, "rewards/accuracies": 0.6, "rewards/chosen": 0.1,
                     "rewards/rejected": -0.02, "objective/kl": 0.01, "tokens_per_second": 1234.5,
                     "eval_loss": 0.7, "learning_rate": 5e-6}, step=3, epoch=0.3)
        text = scrape(metrics.port)
        proc = promtool_check(text)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert used_by_alerts_and_dashboard("align_trainer_") <= families(text)
        assert 'align_trainer_metric{job="dpo-run",name="objective_kl",split="train"}' in text
        # A diverged step is exported raw (NaN) before the run stops; the exposition stays valid.
        with pytest.raises(Diverged):
            metrics.log({"loss": math.nan}, step=4)
        text = scrape(metrics.port)
        assert 'align_trainer_loss{job="dpo-run",split="train"} NaN' in text
        assert promtool_check(text).returncode == 0
    finally:
        metrics.close()


def _operator_metrics_module() -> Any:
    return importlib.import_module("align_operator.metrics")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_operator_endpoint_passes_promtool() -> None:
    module = _operator_metrics_module()
    port = _free_port()
    module.serve(port)  # the operator's own server (a daemon thread, once per process)
    module.record_phase("team-a", "dpo-run", "Running")
    module.record_phase("team-a", "kto-run", "Failed")
    module.ERRORS.labels("ApiError").inc()
    module.RECONCILE_SECONDS.labels("create").observe(0.05)
    text = scrape(port)
    proc = promtool_check(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = {m.removesuffix("_total") for m in used_by_alerts_and_dashboard("align_operator_")}
    assert expected <= {f.removesuffix("_total") for f in families(text)}
    assert 'align_operator_jobs{phase="Failed"}' in text and 'align_operator_errors_total{reason="ApiError"}' in text
    module.record_phase("team-a", "dpo-run", None)
    module.record_phase("team-a", "kto-run", None)
