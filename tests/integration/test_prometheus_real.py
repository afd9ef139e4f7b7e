"""Prometheus for real: Debian's Prometheus server scrapes the operator and a running trainer, and evaluates the
chart's alert rules (charts/align-operator/files/alerts.yaml) on those samples.

The local cluster stands in for the cluster: the operator runs as its own process with its metrics port, the node agent
runs the real trainer (`python -m align_trainer`, builtin://tiny, DPO, a few steps). Targets come from a file_sd
file that the test writes from the pods' `prometheus.io/*` annotations, standing in for the chart's PodMonitor
(`honorLabels: true`, plus the pod's namespace as a target label, as the Prometheus operator adds it) and a static
target with job="align-operator" for its ServiceMonitor.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml

from align_localcluster import poll_until
from tests.unit.test_alerts import RULES

PROMETHEUS = shutil.which("prometheus")
REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def file_sd_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scrape targets of pods that ask for it (`prometheus.io/scrape: "true"`), labelled with their namespace."""
    targets = []
    for pod in pods:
        notes = pod["metadata"].get("annotations") or {}
        ip = (pod.get("status") or {}).get("podIP")
        if notes.get("prometheus.io/scrape") != "true" or not ip or not notes.get("prometheus.io/port"):
            continue
        targets.append({"targets": [f"{ip}:{notes['prometheus.io/port']}"],
                        "labels": {"namespace": pod["metadata"]["namespace"], "pod": pod["metadata"]["name"],
                                   "__metrics_path__": notes.get("prometheus.io/path", "/metrics")}})
    return targets


def prometheus_config(operator_port: int, sd_file: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "align-operator", "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
            {"job_name": "align-trainers", "honor_labels": True, "file_sd_configs": [{"files": [str(sd_file)]}]},
        ],
    }


class Prometheus:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10)

    def ready(self) -> bool:
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.http.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def alerts(self) -> dict[str, str]:
        """alertname -> state (pending/firing) of the active alerts."""
        body = self.http.get("/api/v1/alerts").json()
        return {a["labels"]["alertname"]: a["state"] for a in body["data"]["alerts"]}

    def rule_health(self) -> dict[str, str]:
        body = self.http.get("/api/v1/rules").json()
        return {r["name"]: r["health"] for g in body["data"]["groups"] for r in g["rules"]}


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    return poll_until(check, timeout, what, poll=0.5)


def dpo_job(name: str) -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": name},
            "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny", "adapter": {"r": 4, "alpha": 8}},
                     "data": {"train": {"uri": "data/preference.openai.jsonl", "format": "openai-preference"}},
                     # long enough (about 10 s on an idle core) for Prometheus to discover the pod: its discovery
                     # manager hands new targets to the scrapers at most every 5 s
                     "hyperparameters": {"maxSteps": 96, "batchSize": 4, "maxLength": 64, "learningRate": 0.005,
                                         "loggingSteps": 1},
                     "evaluation": {"enabled": False}, "resources": {"gpusPerNode": 0}}}


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: scripts/setup.sh installs Debian's package as root")
def test_prometheus_scrapes_trainer_and_operator_and_evaluates_the_chart_alerts(tmp_path: Path) -> None:
    from align_localcluster import LocalCluster

    operator_port, prom_port = free_port(), free_port()
    sd_file = tmp_path / "trainers.json"
    sd_file.write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(operator_port, sd_file)))
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "prometheus.log", "wb"))
    api = Prometheus(f"http://127.0.0.1:{prom_port}")
    try:
        until(lambda: api.ready(), 60, "Prometheus did not become ready (see prometheus.log)")
        with LocalCluster(tmp_path / "sb", operator="process", cwd=REPO / "examples",
                     settings={"metrics_port": operator_port, "scrape_interval_seconds": 1.0},
                     env={"OMP_NUM_THREADS": "1"}) as sb:
            sb.apply(dpo_job("prom-dpo"))
            sb.apply(dpo_job("prom-bad") | {"spec": {**dpo_job("x")["spec"], "hyperparameters": {"beta": -1}}})

            def trainer_sampled() -> bool:
                sd_file.write_text(json.dumps(file_sd_targets(sb.list("Pod"))))
                return bool(api.query('align_trainer_loss{job="prom-dpo", split="train"}'))
            until(trainer_sampled, 120, "Prometheus never scraped a loss from the running trainer")
            job = sb.wait("prom-dpo", timeout=600)
            assert job["status"]["phase"] == "Succeeded", job["status"]

            # The loss read back through Prometheus is one the trainer itself recorded, with the label contract
            # the alerts rely on (job = the AlignmentJob's name, namespace from the target).
            (sample,) = api.query('last_over_time(align_trainer_loss{job="prom-dpo", split="train"}[10m])')
            assert sample["metric"]["namespace"] == "default"
            logged = [json.loads(line) for line in next((tmp_path / "sb").rglob("metrics.jsonl")).read_text()
                      .splitlines()]
            assert any(abs(float(sample["value"][1]) - r["loss"]) < 1e-6 for r in logged if "loss" in r), \
                (sample, logged)
            assert api.query('last_over_time(align_trainer_total_steps{job="prom-dpo"}[10m]) == 96')

            # Every rule evaluates cleanly on real series; the operator is up, so AlignOperatorDown stays quiet,
            # and the invalid job's Failed phase makes AlignmentJobFailed pending (its `for` is 1m).
            until(lambda: api.query('align_operator_jobs{job="align-operator", phase="Failed"} == 1'), 30,
                  "the operator's jobs-by-phase gauge never showed the failed job")
            until(lambda: api.alerts().get("AlignmentJobFailed") == "pending", 30, "AlignmentJobFailed not pending")
            assert set(api.rule_health().values()) == {"ok"}, api.rule_health()
            assert "AlignOperatorDown" not in api.alerts()
            assert "AlignTrainingDiverged" not in api.alerts()

            # Operator gone: its scrapes fail, and AlignOperatorDown goes pending on the real `up` series.
            sb.kill_operator()
            until(lambda: api.alerts().get("AlignOperatorDown") == "pending", 30, "AlignOperatorDown not pending")
    finally:
        prom.terminate()
        prom.wait(timeout=20)
