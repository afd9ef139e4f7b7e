"""The operator's admission webhook served to a real API server: its own TLS on loopback, a
ValidatingWebhookConfiguration with clientConfig.url (no Service routing without a kube-proxy), and the operator
itself (`kopf run -m align_operator.main`) as a subprocess with the webhook enabled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from align_api import crd
from align_localcluster import webhook
from align_localcluster.webhook import write_tls
from tests.realk8s import RealCluster

REPO = Path(__file__).resolve().parents[2]
CONFIG_NAME = "align-webhook-test"


def install_crd(cluster: RealCluster, crd_server: bool) -> None:
    import yaml

    with cluster.client(crd=crd_server) as c:
        body = yaml.safe_load((REPO / "crds" / crd.CRD_FILE).read_text())
        r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=body)
        assert r.status_code in (201, 409), r.text
        for _ in range(300):
            got = c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd.CRD_NAME}").json()
            if any(cond["type"] == "Established" and cond["status"] == "True"
                   for cond in (got.get("status") or {}).get("conditions") or []):
                return
            time.sleep(0.1)
    raise AssertionError("CRD never became Established")


def remove_crd(cluster: RealCluster, crd_server: bool) -> None:
    """Leave the session's cluster as found (test files share it: `--dist loadfile` runs them one after another)."""
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd.CRD_NAME}"
    cluster.api("DELETE", path, crd=crd_server)
    for _ in range(600):
        if cluster.api("GET", path, crd=crd_server).status_code == 404:
            return
        time.sleep(0.1)
    raise AssertionError(f"CRD not deleted from the {'CRD' if crd_server else 'core'} server within 60 s")


@dataclass
class ServedWebhook:
    url: str
    log: Path


def _denied_by_webhook(cluster: RealCluster, crd_server: bool) -> bool:
    path = "/apis/align.dev/v1alpha1/namespaces/default/alignmentjobs?dryRun=All"
    r = cluster.api("POST", path, webhook.PROBE, crd=crd_server)
    return webhook.denies_probe(r.status_code, r.text)


@contextmanager
def served_webhook(cluster: RealCluster, workdir: Path, crd_servers: tuple[bool, ...] = (False,)) -> Iterator[ServedWebhook]:
    """The operator with its webhook on 127.0.0.1, registered on the core server (the 1.36 CRD server reads the
    same registrations through its kubeconfig). Waits until every server in crd_servers calls it."""
    for crd_server in (False, True):
        install_crd(cluster, crd_server)
    port = cluster.base + webhook.PORT_OFFSET
    ca = write_tls(workdir / "tls")
    log = workdir / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "ALIGN_OPERATOR_WEBHOOK_PORT": str(port),
           "ALIGN_OPERATOR_WEBHOOK_ADDR": "127.0.0.1", "ALIGN_OPERATOR_WEBHOOK_CERT_DIR": str(workdir / "tls"),
           "ALIGN_OPERATOR_METRICS_PORT": "0", "ALIGN_OPERATOR_LOG_FORMAT": "plain"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
                                 "-m", "align_operator.main"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = webhook.url(port)
    try:
        r = cluster.api("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
                        # failing closed, so that a test sees a webhook the server does not call
                        webhook.configuration(CONFIG_NAME, port, ca, failure_policy="Fail"))
        assert r.status_code in (201, 409), r.text
        deadline = time.monotonic() + 60
        pending = set(crd_servers)
        while pending:
            assert proc.poll() is None, f"operator exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the webhook never denied the probe (schema-valid, align_api-invalid):\n{log.read_text()[-3000:]}"
            pending = {s for s in pending if not _denied_by_webhook(cluster, s)}
            time.sleep(0.3)
        yield ServedWebhook(url=url, log=log)
    finally:
        cluster.api("DELETE", f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{CONFIG_NAME}")
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for crd_server in (False, True):
            remove_crd(cluster, crd_server)
