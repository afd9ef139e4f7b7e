"""Helm for real: the chart installs through Helm's library (helm-sdkpy) on the real core server (kube-apiserver
1.20), creates its CRD, RBAC, webhook configuration and Deployment, keeps its webhook certificate across an
upgrade, and uninstalls.

The chart says `kubeVersion: >=1.29.0-0` (CEL rules GA, Job podFailurePolicy); 1.20 refuses it, which the first
test shows. The others install a copy whose constraint is lowered to 1.20: the objects are the chart's, only the
version gate differs (docs/install.md lists which feature needs which Kubernetes version).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from align_api.constants import CRD_NAME
from tests.real.webhook_support import remove_crd
from tests.realk8s import RealCluster
from tests.unit.chart_support import CHART, HELM_SDK, helm_sdk_available

pytestmark = [pytest.mark.realk8s,
              pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")]

RELEASE = "align"


def helm(cluster: RealCluster, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Helm's library in a subprocess (its Go runtime reads the environment once, at process start)."""
    env = {k: v for k, v in os.environ.items() if k != "HELM_DRIVER"}
    proc = subprocess.run([sys.executable, str(HELM_SDK), "release", "--kubeconfig", str(cluster.kubeconfig)],
                          input=json.dumps(steps), capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def chart_for_1_20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("chart") / "align-operator"
    shutil.copytree(CHART, copy)
    meta = (copy / "Chart.yaml").read_text()
    assert 'kubeVersion: ">=1.29.0-0"' in meta
    (copy / "Chart.yaml").write_text(meta.replace('kubeVersion: ">=1.29.0-0"', 'kubeVersion: ">=1.20.0-0"'))
    return copy


def test_the_chart_refuses_kubernetes_1_20(realk8s: RealCluster) -> None:
    ns = realk8s.namespace("helm-refused")
    [result] = helm(realk8s, [{"action": "install", "chart": str(CHART), "namespace": ns, "name": RELEASE}])
    assert "kubeVersion" in result.get("error", "") or "1.29" in result.get("error", ""), result


def _get(cluster: RealCluster, path: str) -> dict[str, Any]:
    r = cluster.api("GET", path)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
    return r.json()


def test_install_upgrade_uninstall_on_the_real_server(realk8s: RealCluster, chart_for_1_20: Path) -> None:
    ns = realk8s.namespace("helm")
    full = f"{RELEASE}-align-operator"
    install, upgrade = helm(realk8s, [
        {"action": "install", "chart": str(chart_for_1_20), "namespace": ns, "name": RELEASE},
        {"action": "upgrade", "chart": str(chart_for_1_20), "namespace": ns, "name": RELEASE,
         "values": {"operator": {"logLevel": "debug"}}},
    ])
    assert install.get("status") == "deployed", install
    assert upgrade.get("status") == "deployed", upgrade

    # What the server holds: the CRD (from crds/), RBAC, ServiceAccount, Deployment, Services, TLS, webhook config.
    assert _get(realk8s, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
    role = _get(realk8s, f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{full}")
    assert any("alignmentjobs" in rule["resources"] for rule in role["rules"])
    binding = _get(realk8s, f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{full}")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": full, "namespace": ns}]
    assert _get(realk8s, f"/api/v1/namespaces/{ns}/serviceaccounts/{full}")
    deployment = _get(realk8s, f"/apis/apps/v1/namespaces/{ns}/deployments/{full}")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--verbose" in container["args"], "the upgrade's value reached the Deployment"
    assert {p["name"] for p in _get(realk8s, f"/api/v1/namespaces/{ns}/services/{full}-webhook")["spec"]["ports"]} == {"webhook"}
    secret = _get(realk8s, f"/api/v1/namespaces/{ns}/secrets/{full}-webhook-tls")
    config = _get(realk8s, f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{full}-{ns}")
    hook = config["webhooks"][0]
    assert hook["clientConfig"]["service"] == {"namespace": ns, "name": f"{full}-webhook", "path": "/validate-spec",
                                               "port": 443}
    # The upgrade kept the certificate (lookup of the existing Secret), so caBundle and Secret stay in step.
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    installed = {d["kind"]: d for d in yaml.safe_load_all(install["manifest"]) if d}
    assert installed["Secret"]["data"]["tls.crt"] == secret["data"]["tls.crt"]

    [removed] = helm(realk8s, [{"action": "uninstall", "namespace": ns, "name": RELEASE}])
    assert removed.get("status") == "uninstalled", removed
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments/{full}",
                 f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{full}-{ns}",
                 f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{full}",
                 f"/api/v1/namespaces/{ns}/secrets/{full}-webhook-tls"):
        assert realk8s.api("GET", path).status_code == 404, path
    # Helm never deletes what it installed from crds/: AlignmentJobs survive an uninstall.
    assert realk8s.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}").status_code == 200
    remove_crd(realk8s, crd_server=False)
