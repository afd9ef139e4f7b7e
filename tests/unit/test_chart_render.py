"""The chart's templates rendered by Helm's own engine (helm-sdkpy) for several value sets, and the objects checked:
Kubernetes schemas, Pod Security restricted, least-privilege RBAC, and the contracts with the operator,
the trainer and Prometheus."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.unit.chart_support import (CHART, REPO, by_kind, documents, grants, helm_sdk_available, one,
                                      pod_templates, pss_restricted_violations, rbac_violations, render_many)

pytestmark = pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")

DIGEST = "sha256:" + "ab" * 32
MONITORING = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "podMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "ML"}},
    "networkPolicy": {"trainer": {"enabled": True}, "operator": {"enabled": True}},
}
#: name -> (values, namespace, release name)
VALUE_SETS: dict[str, tuple[dict[str, Any], str, str]] = {
    "defaults": ({}, "align-system", "align"),
    "namespaced": ({"rbac": {"scope": "namespaced", "watchNamespaces": ["team-a", "team-b"]},
                    "networkPolicy": {"trainer": {"enabled": True}}}, "align-system", "align"),
    "namespaced-release-namespace": ({"rbac": {"scope": "namespaced"}}, "ml", "align-operator"),
    "monitoring": (MONITORING, "align-system", "align"),
    "pinned": ({"image": {"digest": DIGEST}, "trainer": {"image": {"digest": DIGEST, "pullPolicy": "Always"}},
                "fullnameOverride": "aligner", "imagePullSecrets": [{"name": "regcred"}],
                "operator": {"logLevel": "debug", "extraEnv": [{"name": "EXTRA", "value": "1"}]},
                "rbac": {"aggregateToDefaultRoles": False}, "nodeSelector": {"kubernetes.io/os": "linux"}},
               "align-system", "align"),
    "webhook-cert-manager": ({"webhook": {"certManager": {"enabled": True, "issuerRef": {"name": "corp-ca",
                                                                                        "kind": "ClusterIssuer"}},
                                          "failurePolicy": "Fail"},
                              "networkPolicy": {"operator": {"enabled": True}}}, "align-system", "align"),
    "no-webhook": ({"webhook": {"enabled": False}}, "align-system", "align"),
    # YAML 1.1 reads n/yes/on as booleans: every name and label must be quoted to survive.
    "yaml11-names": ({}, "yes", "n"),
}
#: Values the schema (or the templates) must refuse, with a fragment of Helm's message.
BAD_VALUES = {
    "unknown-scope": ({"rbac": {"scope": "everything"}}, "scope"),
    "typo-key": ({"imagee": {"tag": "x"}}, "imagee"),
    "root-trainer": ({"trainer": {"runAsUser": 0}}, "runAsUser"),
    "bad-digest": ({"image": {"digest": "latest"}}, "digest"),
    "bad-failure-policy": ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
    "servicemonitor-without-service": ({"serviceMonitor": {"enabled": True}, "metricsService": {"enabled": False}},
                                       "metricsService"),
}
KUBE_VERSIONS = ("1.29.0", "1.33.0")
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
CERT_MANAGER_KINDS = {"Certificate", "Issuer"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    names = [*VALUE_SETS, *BAD_VALUES]
    requests = [{"values": v, "namespace": ns, "name": rel} for v, ns, rel in VALUE_SETS.values()]
    requests += [{"values": v} for v, _ in BAD_VALUES.values()]
    return dict(zip(names, render_many(requests)))


@pytest.fixture(scope="module")
def docs(rendered: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in VALUE_SETS:
        assert "error" not in rendered[name], f"{name}: {rendered[name].get('error')}"
        out[name] = documents(rendered[name]["manifest"])
    return out


def _operator(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(docs, "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _metrics_service(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(s for s in by_kind(objs, "Service") if s["metadata"]["name"].endswith("-metrics"))


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_objects_match_kubernetes_schemas(docs: dict[str, list[dict[str, Any]]], name: str) -> None:
    import kubernetes_validate

    for doc in docs[name]:
        if doc["kind"] in PROMETHEUS_OPERATOR_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"], doc["kind"]
            continue
        if doc["kind"] in CERT_MANAGER_KINDS:
            assert doc["apiVersion"] == "cert-manager.io/v1" and doc["spec"], doc["kind"]
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_meet_pod_security_restricted(docs: dict[str, list[dict[str, Any]]], name: str) -> None:
    templates = list(pod_templates(docs[name]))
    assert templates, "the operator Deployment is missing"
    for workload, spec in templates:
        assert pss_restricted_violations(spec) == [], workload


def test_pss_checker_catches_violations() -> None:
    spec = {"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
            "containers": [{"name": "c", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}},
                            "ports": [{"containerPort": 80, "hostPort": 80}]}]}
    found = " ".join(pss_restricted_violations(spec))
    for fragment in ("hostNetwork", "hostPath", "privileged", "SYS_ADMIN", "drop ALL", "allowPrivilegeEscalation",
                     "runAsNonRoot", "seccompProfile", "hostPort"):
        assert fragment in found


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rbac_has_no_wildcards_or_secret_access(docs: dict[str, list[dict[str, Any]]], name: str) -> None:
    assert rbac_violations(docs[name]) == []


def test_rbac_checker_catches_wildcards() -> None:
    role = {"kind": "ClusterRole", "metadata": {"name": "x"},
            "rules": [{"apiGroups": ["*"], "resources": ["secrets"], "verbs": ["get", "escalate"]}]}
    assert len(rbac_violations([role])) == 2


def test_cluster_scope_grants_exactly_what_the_operator_uses(docs: dict[str, list[dict[str, Any]]]) -> None:
    roles = {r["metadata"]["name"]: r for r in by_kind(docs["defaults"], "ClusterRole")}
    operator = grants(roles["align-align-operator"]["rules"])
    expected = {
        ("align.dev", "alignmentjobs", v) for v in ("get", "list", "watch", "patch")} | {
        ("align.dev", "alignmentjobs/status", "patch")} | {
        ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")} | {
        ("", "namespaces", v) for v in ("list", "watch")} | {
        ("", r, v) for r in ("configmaps", "services") for v in ("get", "create")} | {
        ("batch", "jobs", v) for v in ("get", "list", "watch", "create", "patch", "delete")} | {
        ("", "pods", v) for v in ("list", "watch")} | {
        ("", "events", "create")}
    assert operator == expected
    # the one delete: the trainer Job, to suspend where the server prunes Job.spec.suspend (status/lifecycle.py)
    assert {(g, r, v) for g, r, v in operator if v in {"delete", "deletecollection", "update"}} == {
        ("batch", "jobs", "delete")}
    binding = one(docs["defaults"], "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "align-align-operator",
                                    "namespace": "align-system"}]
    assert by_kind(docs["defaults"], "Role") == []
    # Users of the built-in edit/view roles get AlignmentJobs through aggregation.
    assert roles["align-align-operator-edit"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert roles["align-align-operator-view"]["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"


def test_namespaced_scope_uses_roles_per_watched_namespace(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["namespaced"]
    cluster_roles = {r["metadata"]["name"]: r for r in by_kind(objs, "ClusterRole")}
    # The only cluster-wide grant is what Kopf needs to start: list/watch CRDs and namespaces.
    assert grants(cluster_roles["align-align-operator"]["rules"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"), ("", "namespaces", "watch")}
    roles = by_kind(objs, "Role")
    bindings = by_kind(objs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(("batch", "jobs", "create") in grants(r["rules"]) for r in roles)
    assert all(b["subjects"][0]["namespace"] == "align-system" for b in bindings)
    container = _operator(objs)
    assert "--namespace=team-a" in container["args"] and "--namespace=team-b" in container["args"]
    assert "--all-namespaces" not in container["args"]
    assert _env(container)["ALIGN_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert sorted(n["metadata"]["namespace"] for n in by_kind(objs, "NetworkPolicy")) == ["team-a", "team-b"]
    # Without watchNamespaces, the release namespace is watched.
    default_ns = docs["namespaced-release-namespace"]
    assert [r["metadata"]["namespace"] for r in by_kind(default_ns, "Role")] == ["ml"]
    assert _env(_operator(default_ns))["ALIGN_OPERATOR_NAMESPACES"] == "ml"


def test_operator_deployment_contract(docs: dict[str, list[dict[str, Any]]]) -> None:
    deployment = one(docs["defaults"], "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    container = _operator(docs["defaults"])
    assert container["command"] == ["kopf", "run"]
    assert {"--standalone", "--module=align_operator.main", "--all-namespaces",
            "--liveness=http://0.0.0.0:8080/healthz"} <= set(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090, "webhook": 9443}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["image"] == "ghcr.io/align-operator/operator:0.1.0"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = _env(container)
    assert env["ALIGN_OPERATOR_TRAINER_IMAGE"] == "ghcr.io/align-operator/trainer:0.1.0"
    assert env["ALIGN_OPERATOR_METRICS_PORT"] == "9090" and env["ALIGN_OPERATOR_NAMESPACES"] == ""
    service = _metrics_service(docs["defaults"])
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_pinned_images_and_overrides(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["pinned"]
    container = _operator(objs)
    assert container["image"] == f"ghcr.io/align-operator/operator@{DIGEST}"
    env = _env(container)
    assert env["ALIGN_OPERATOR_TRAINER_IMAGE"] == f"ghcr.io/align-operator/trainer@{DIGEST}"
    assert env["ALIGN_OPERATOR_IMAGE_PULL_POLICY"] == "Always" and env["EXTRA"] == "1"
    assert "--verbose" in container["args"]
    assert one(objs, "Deployment")["metadata"]["name"] == "aligner"
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert [r["metadata"]["name"] for r in by_kind(objs, "ClusterRole")] == ["aligner"]


def test_operator_env_names_exist_in_operator_settings(docs: dict[str, list[dict[str, Any]]]) -> None:
    from align_operator import settings
    from dataclasses import fields

    known = {settings.ENV_PREFIX + f.name.upper() for f in fields(settings.Settings)}
    chart_env = {name for name in _env(_operator(docs["defaults"])) if name.startswith(settings.ENV_PREFIX)}
    assert chart_env and chart_env <= known, chart_env - known
    # The chart's values parse with the operator's own reader.
    parsed = settings.Settings.from_env(_env(_operator(docs["namespaced"])))
    assert parsed.namespaces == ("team-a", "team-b") and parsed.metrics_port == 9090


def test_monitoring_objects(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["monitoring"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    sm = one(objs, "ServiceMonitor")
    assert sm["spec"]["jobLabel"] == "app.kubernetes.io/name"  # job="align-operator" in the alerts
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    pm = one(objs, "PodMonitor")
    assert pm["spec"]["selector"] == values["trainer"]["podSelector"]
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    assert pm["spec"]["podMetricsEndpoints"][0]["honorLabels"] is True
    rule = one(objs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    dashboard = one(objs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["align-operator.json"]) == json.loads(
        (CHART / "files" / "dashboards" / "align-operator.json").read_text())
    policies = {p["metadata"]["name"]: p for p in by_kind(objs, "NetworkPolicy")}
    trainer = policies["align-align-operator-trainer"]["spec"]
    assert trainer["podSelector"] == values["trainer"]["podSelector"]
    assert trainer["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9400}]
    operator = policies["align-align-operator"]["spec"]
    assert operator["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9090}]


def test_service_monitor_selects_the_metrics_service(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["monitoring"]
    selector = one(objs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    labels = _metrics_service(objs)["metadata"]["labels"]
    assert selector.items() <= labels.items()
    # The webhook's Service matches the same labels but has no port named like the endpoint: never a target.
    endpoint_ports = {e["port"] for e in one(objs, "ServiceMonitor")["spec"]["endpoints"]}
    for service in by_kind(objs, "Service"):
        if service is not _metrics_service(objs):
            assert not endpoint_ports & {p["name"] for p in service["spec"]["ports"]}


def test_yaml11_names_stay_strings(docs: dict[str, list[dict[str, Any]]]) -> None:
    for doc in docs["yaml11-names"]:
        meta = doc["metadata"]
        assert all(isinstance(v, str) for v in (meta.get("labels") or {}).values()), doc["kind"]
        assert meta.get("namespace") in (None, "yes")


def test_notes_tell_the_next_commands(rendered: dict[str, dict[str, Any]]) -> None:
    notes = rendered["defaults"]["notes"]
    assert "kubectl -n align-system rollout status deployment/align-align-operator" in notes
    assert "kubectl get aj" in notes and "helm show crds" in notes
    assert "team-a, team-b" in rendered["namespaced"]["notes"]
    assert "PrometheusRule" in rendered["monitoring"]["notes"]


@pytest.mark.parametrize("name", BAD_VALUES)
def test_bad_values_are_refused(rendered: dict[str, dict[str, Any]], name: str) -> None:
    assert "error" in rendered[name], f"{name} rendered although it should not"
    assert BAD_VALUES[name][1] in rendered[name]["error"]


def test_chart_crd_is_identical_to_crds_dir() -> None:
    import kubernetes_validate

    generated = REPO / "crds" / "align.dev_alignmentjobs.yaml"
    copy = CHART / "crds" / "align.dev_alignmentjobs.yaml"
    assert generated.exists(), "crds/ is generated by `python -m align_api.crd --write`"
    assert copy.read_bytes() == generated.read_bytes(), "run `python -m align_api.crd --write`"
    crd = yaml.safe_load(copy.read_text())
    from align_api.constants import CRD_NAME, KIND

    assert crd["metadata"]["name"] == CRD_NAME and crd["spec"]["names"]["kind"] == KIND
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(crd, version, strict=True)


def test_chart_selects_the_trainer_pods_the_operator_renders(docs: dict[str, list[dict[str, Any]]]) -> None:
    """PodMonitor and NetworkPolicy select the operator's real trainer pods, on the port it names; the pods,
    built with the settings the chart passes, meet PSS restricted."""
    from align_operator import renderers
    from align_api import load_file
    from align_operator.settings import Settings

    objs = docs["monitoring"]
    settings = Settings.from_env(_env(_operator(objs)))
    job = load_file(REPO / "examples" / "dpo.yaml")[0]
    trainer_job = renderers.render_job(job, "team-a", settings)
    pod = trainer_job["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = one(objs, "PodMonitor")["spec"]["selector"]
    assert selector["matchLabels"].items() <= labels.items()
    assert all(e["key"] in labels for e in selector["matchExpressions"] if e["operator"] == "Exists")
    port_names = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert one(objs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] in port_names
    policy = next(p for p in by_kind(objs, "NetworkPolicy") if p["metadata"]["name"].endswith("-trainer"))
    assert policy["spec"]["podSelector"] == selector
    assert pss_restricted_violations(pod["spec"]) == []
    assert pod["spec"]["containers"][0]["image"] == "ghcr.io/align-operator/trainer:0.1.0"
    # The operator's own pod is not a trainer pod.
    operator_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selector["matchLabels"].items() <= operator_labels.items()
