"""The operator on a real control plane, as a cluster admin would install it: the CRD, the chart's RBAC (the
rendered kustomize base), a ServiceAccount token from the real server, the operator as a process with that
token only, and node agents (our kubelet) running the pods the real Job controller creates.

Two nodes: `real` runs the pod's own command (the trainer), `fake` runs the fake trainer (fast, steerable by
labels); an AlignmentJob picks one with `spec.resources.nodeSelector: {align.dev/trainer: real|fake}`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from align_localcluster.kube import Client, connection_from_kubeconfig
from align_localcluster import LOCAL_SETTINGS, poll_until
from align_localcluster.nodeagent import NodeAgent
from align_operator.settings import Settings
from tests.realk8s import RealCluster

REPO = Path(__file__).resolve().parents[2]
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
OPERATOR_NS = "align-system"
FAKE_TRAINER = [sys.executable, "-m", "align_localcluster.fake_trainer", "--config", "/etc/align/job.yaml",
                "--output", "/workspace/output"]
SETTINGS = {**LOCAL_SETTINGS, "scrape_interval_seconds": 0.5, "status_interval_seconds": 1.0,
            "forbidden_retry_seconds": 2.0}
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 60, message: str = "condition", poll: float = 0.2) -> T:
    return poll_until(check, timeout, f"{message} not met", poll)


def rbac_documents(rules: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """The operator's ServiceAccount, ClusterRoles and binding exactly as the kustomize base renders the chart."""
    docs = [d for d in yaml.safe_load_all((REPO / "deploy/kustomize/base/align-operator.yaml").read_text())
            if d and d["kind"] in RBAC_KINDS]
    if rules is not None:
        for doc in docs:
            if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "align-operator":
                doc["rules"] = rules(doc["rules"])
    return docs


def apply(cluster: RealCluster, docs: list[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def delete(cluster: RealCluster, docs: list[dict[str, Any]]) -> None:
    """Remove what `apply` made (test files share a control plane: a Helm install must not find our RBAC)."""
    cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(docs))


def service_account_kubeconfig(cluster: RealCluster, path: Path, name: str = "align-operator",
                               namespace: str = OPERATOR_NS) -> Path:
    """A kubeconfig with the token the real token controller issued for the ServiceAccount (not admin)."""
    def token() -> str | None:
        secrets = cluster.api("GET", f"/api/v1/namespaces/{namespace}/secrets").json().get("items", [])
        for secret in secrets:
            annotations = secret["metadata"].get("annotations") or {}
            if secret.get("type") == "kubernetes.io/service-account-token" and \
                    annotations.get("kubernetes.io/service-account.name") == name and "token" in (secret.get("data") or {}):
                return base64.b64decode(secret["data"]["token"]).decode()
        return None
    value = wait_for(token, 30, f"a token for ServiceAccount {namespace}/{name}")
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "real", "cluster": {"server": cluster.url, "certificate-authority": str(cluster.ca)}}],
        "users": [{"name": name, "user": {"token": value}}],
        "contexts": [{"name": "sa", "context": {"cluster": "real", "user": name, "namespace": "default"}}]}))
    return path


class Agents:
    """Node agents in a background event loop (admin credentials: a kubelet is not the operator)."""

    def __init__(self, cluster: RealCluster, workdir: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="node-agents")
        self.thread.start()
        self.cluster, self.workdir = cluster, workdir
        self.agents: list[NodeAgent] = []

    def _call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, name: str, *, trainer: str, command: list[str] | None = None, gpus: int | None = 0) -> NodeAgent:
        async def make() -> NodeAgent:
            client = Client(connection_from_kubeconfig(self.cluster.kubeconfig), retries=20)
            agent = NodeAgent(client, self.workdir / name, name=name, gpus=gpus, labels={"align.dev/trainer": trainer},
                              command_override=command, cwd=REPO / "examples", resync_seconds=0.5,
                              extra_env={"OMP_NUM_THREADS": "1"})
            await agent.start()
            await agent.wait_synced()
            return agent
        agent = self._call(make())
        self.agents.append(agent)
        return agent

    def stop(self) -> None:
        async def stop_one(agent: NodeAgent) -> None:
            await agent.stop()
            await agent.client.close()

        async def stop_all() -> None:  # side by side: each stop is bounded per stage, not their sum
            await asyncio.gather(*(stop_one(agent) for agent in self.agents))
        self._call(stop_all(), timeout=120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class OperatorProcess:
    """`python -m align_operator` with the ServiceAccount's kubeconfig; kill/restart as a crash would."""

    def __init__(self, kubeconfig: Path, log: Path):
        self.kubeconfig, self.log = kubeconfig, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **Settings.from_env({}, **SETTINGS).to_env()}
        env.pop("KUBECONFIG", None)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "align_operator", "--kubeconfig", str(self.kubeconfig),
                                             "--all-namespaces"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def audit(cluster: RealCluster, user: str) -> list[dict[str, Any]]:
    """The core server's audit records of one user (scripts/realk8s.sh audits every request)."""
    path = cluster.state / "logs" / "audit.log"
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if (record.get("user") or {}).get("username") == user:
            records.append(record)
    return records
