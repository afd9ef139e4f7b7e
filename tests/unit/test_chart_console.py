"""The chart's optional console (console.enabled): off by default; when on, a read-only ServiceAccount and
ClusterRole (Roles per watched namespace in namespaced scope), a Service and a restricted Deployment running
`alignctl console --address 0.0.0.0`. The real API server's verdict on the RBAC: tests/real/test_console_rbac_real.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.chart_support import (by_kind, documents, grants, helm_sdk_available, pod_templates,
                                      pss_restricted_violations, rbac_violations, render_many)

pytestmark = pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")
ON = {"console": {"enabled": True}}
READ_ONLY = {("align.dev", "alignmentjobs", v) for v in ("get", "list", "watch")} | {
    ("", r, v) for r in ("pods", "events") for v in ("get", "list", "watch")} | {("", "pods/log", "get")}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "impersonate", "escalate", "bind"}


@pytest.fixture(scope="module")
def docs() -> dict[str, list[dict[str, Any]]]:
    sets = {"defaults": {}, "on": ON,
            "namespaced": {**ON, "rbac": {"scope": "namespaced", "watchNamespaces": ["team-a", "team-b"]}}}
    rendered = render_many([{"values": v, "namespace": "align-system", "name": "align"} for v in sets.values()])
    for name, result in zip(sets, rendered):
        assert "error" not in result, (name, result)
    out = {name: documents(result["manifest"]) for name, result in zip(sets, rendered)}
    out["notes"] = {name: result.get("notes", "") for name, result in zip(sets, rendered)}  # type: ignore[assignment]
    return out


def console_objects(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in objs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "console"]


def test_off_by_default(docs: dict[str, list[dict[str, Any]]]) -> None:
    assert console_objects(docs["defaults"]) == []
    assert "port-forward svc/align-align-operator-console" not in docs["notes"]["defaults"]
    assert "port-forward svc/align-align-operator-console 8765:80" in docs["notes"]["on"]


def test_console_objects_are_read_only_and_restricted(docs: dict[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    objs = console_objects(docs["on"])
    assert sorted(d["kind"] for d in objs) == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                                               "ServiceAccount"]
    for doc in objs:
        kubernetes_validate.validate(doc, "1.29.0", strict=True)
    [role] = by_kind(objs, "ClusterRole")
    assert grants(role["rules"]) == READ_ONLY
    assert rbac_violations(objs) == []
    [binding] = by_kind(objs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "align-align-operator-console",
                                    "namespace": "align-system"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    [(_, spec)] = list(pod_templates(objs))
    assert pss_restricted_violations(spec) == []
    assert spec["serviceAccountName"] == "align-align-operator-console"  # its own account, not the operator's
    container = spec["containers"][0]
    assert container["command"] == ["alignctl", "console"]
    assert "--address=0.0.0.0" in container["args"] and "--all-namespaces" in container["args"]


def test_service_selects_the_console_and_not_the_operator(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["on"]
    [service] = by_kind(console_objects(objs), "Service")
    deployments = {d["metadata"]["name"]: d for d in by_kind(objs, "Deployment")}
    console, operator = deployments["align-align-operator-console"], deployments["align-align-operator"]

    def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in selector.items())
    assert selects(service["spec"]["selector"], console) and not selects(service["spec"]["selector"], operator)
    # and the operator's own selector does not adopt the console's pods
    assert not selects(operator["spec"]["selector"]["matchLabels"], console)
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_namespaced_scope_gets_roles_in_watched_namespaces(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = console_objects(docs["namespaced"])
    assert by_kind(objs, "ClusterRole") == [] and by_kind(objs, "ClusterRoleBinding") == []
    roles = by_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(grants(r["rules"]) == READ_ONLY for r in roles)
    [(_, spec)] = list(pod_templates(objs))
    args = spec["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--all-namespaces" not in args


def test_no_write_verb_anywhere(docs: dict[str, list[dict[str, Any]]]) -> None:
    for name in ("on", "namespaced"):
        for role in by_kind(console_objects(docs[name]), "ClusterRole") + by_kind(console_objects(docs[name]), "Role"):
            assert not {v for _, _, v in grants(role["rules"])} & WRITE_VERBS
