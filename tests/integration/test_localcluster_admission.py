"""Validating admission in the emulated API server (align_localcluster/admission.py), against the operator's own
webhook: what the chart registers on a cluster refuses an invalid manifest at `kubectl apply` here too, with
alignctl's words; dry runs store nothing; the failure policies act as kube-apiserver's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from align_localcluster import LocalCluster, admission, webhook
from align_localcluster.kubelet import free_port
from align_localcluster.localplane import alive
from align_operator.cli.validate_cmd import validate_paths

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing: the dev extra has it")]
JOBS = "/apis/align.dev/v1alpha1/namespaces/default/alignmentjobs"
CONFIGS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
DENIED = 'admission webhook "validate-spec.align.dev" denied the request: '


@pytest.mark.parametrize(("patterns", "resource", "expected"), [
    (["alignmentjobs"], "alignmentjobs", True),
    (["alignmentjobs"], "alignmentjobs/status", False),   # a rule names subresources to get them
    (["*"], "alignmentjobs", True), (["*"], "alignmentjobs/status", False),
    (["alignmentjobs/*"], "alignmentjobs/status", True), (["alignmentjobs/*"], "alignmentjobs", False),
    (["*/status"], "jobs/status", True), (["*/*"], "jobs", True), (["pods"], "alignmentjobs", False),
])
def test_rules_match_as_kube_apiserver_matches_them(patterns: list[str], resource: str, expected: bool) -> None:
    rule = {"apiGroups": ["align.dev"], "apiVersions": ["*"], "operations": ["CREATE"], "resources": patterns}
    assert admission.rule_matches(rule, "CREATE", "align.dev", "v1alpha1", resource) is expected
    assert not admission.rule_matches(rule, "UPDATE", "align.dev", "v1alpha1", resource)
    assert not admission.rule_matches({**rule, "apiGroups": ["batch"]}, "CREATE", "align.dev", "v1alpha1", resource)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """The emulator, the operator serving its webhook (a process, as the chart runs it), the chart's registration."""
    tls = tmp_path_factory.mktemp("tls")
    port, ca_pem = free_port(), webhook.write_tls(tls)
    settings = {"webhook_port": port, "webhook_addr": "127.0.0.1", "webhook_cert_dir": str(tls)}
    with LocalCluster(tmp_path_factory.mktemp("local"), operator="process", node_agent=False,
                      settings=settings) as sb:
        pid = sb.operator_pid
        assert pid is not None
        assert webhook.register(sb.kubeconfig, port, ca_pem, lambda: alive(pid)) == webhook.url(port)
        yield sb


def kubectl(sb: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", *args], env={**os.environ, "KUBECONFIG": str(sb.kubeconfig)},
                          capture_output=True, text=True, timeout=60)


def test_kubectl_apply_of_an_invalid_manifest_is_refused_with_alignctls_words(cluster: LocalCluster,
                                                                              tmp_path: Path) -> None:
    path = tmp_path / "grpo.yaml"
    path.write_text((REPO / "examples" / "dpo.yaml").read_text().replace("algorithm: dpo", "algorithm: grpo")
                    .replace("name: dpo-tiny", "name: grpo-without-grader"))
    ours = validate_paths([path])[1]
    assert ours  # grpo without a grader
    applied = kubectl(cluster, "apply", "-f", str(path))
    assert applied.returncode == 1 and DENIED in applied.stderr, applied.stderr
    assert ours[0].split(": ", 1)[1] in applied.stderr
    assert cluster.get("grpo-without-grader") is None  # nothing stored
    good = kubectl(cluster, "apply", "-f", str(REPO / "examples" / "dpo.yaml"))
    assert good.returncode == 0 and "dpo-tiny created" in good.stdout, good.stderr


def test_updates_are_checked_and_status_writes_are_not_sent(cluster: LocalCluster) -> None:
    cluster.apply({**_probe(), "metadata": {"name": "upd"}, "spec": {**_probe()["spec"], "hyperparameters": {}}})
    with httpx.Client(base_url=cluster.url) as client:
        refused = client.patch(f"{JOBS}/upd", json={"spec": {"hyperparameters": {"numGenerations": 8}}},
                               headers={"Content-Type": "application/merge-patch+json"})
        assert refused.status_code == 422 and refused.json()["message"].startswith(DENIED), refused.text
        assert refused.json()["reason"] == "Invalid"
        status = client.patch(f"{JOBS}/upd/status", json={"status": {"phase": "Running"}},
                              headers={"Content-Type": "application/merge-patch+json"})
        assert status.status_code == 200, status.text
    assert cluster.get("upd")["spec"]["hyperparameters"] == {}  # type: ignore[index]


def test_dry_run_stores_nothing(cluster: LocalCluster) -> None:
    with httpx.Client(base_url=cluster.url) as client:
        valid = {**_probe(), "metadata": {"name": "dry"}, "spec": {**_probe()["spec"], "hyperparameters": {}}}
        created = client.post(JOBS, params={"dryRun": "All"}, json=valid)
        assert created.status_code == 201 and created.json()["metadata"]["uid"], created.text
        assert cluster.get("dry") is None
        assert client.post(JOBS, params={"dryRun": "All"}, json=_probe()).status_code == 422


def test_failure_policies(cluster: LocalCluster) -> None:
    """A webhook nobody serves: Fail refuses every matching write, Ignore lets it through."""
    dead = webhook.configuration("dead", free_port(), b"", failure_policy="Fail")
    dead["webhooks"][0]["name"] = "dead.align.dev"
    del dead["webhooks"][0]["clientConfig"]["caBundle"]
    valid = {**_probe(), "metadata": {"name": "policy"}, "spec": {**_probe()["spec"], "hyperparameters": {}}}
    with httpx.Client(base_url=cluster.url) as client:
        assert client.post(CONFIGS, json=dead).status_code == 201
        try:
            refused = client.post(JOBS, json=valid)
            assert refused.status_code == 500 and 'failed calling webhook "dead.align.dev"' in refused.json()["message"]
            dead["webhooks"][0]["failurePolicy"] = "Ignore"
            assert client.put(f"{CONFIGS}/dead", json=dead).status_code == 200
            assert client.post(JOBS, json=valid).status_code == 201
        finally:
            client.delete(f"{CONFIGS}/dead")


def _probe() -> dict[str, Any]:
    return {k: v for k, v in webhook.PROBE.items()}
