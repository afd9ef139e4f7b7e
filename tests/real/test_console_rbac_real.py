"""The chart's console RBAC (console.enabled) judged by the real API server's authorizer (kube-apiserver 1.20,
RBAC): SubjectAccessReviews for every verb on every resource the console could touch, and the ServiceAccount's
own token (issued by the real token controller) trying reads and writes. No write verb is ever allowed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.real.operator_plane import apply, delete, service_account_kubeconfig
from tests.realk8s import RealCluster
from tests.unit.chart_support import documents, helm_sdk_available, render_many

pytestmark = [pytest.mark.realk8s,
              pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")]
NAME = "align-align-operator-console"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
#: (apiGroup, resource, subresource) the console could conceivably reach, and beyond.
RESOURCES = [("align.dev", "alignmentjobs", ""), ("align.dev", "alignmentjobs", "status"),
             ("", "pods", ""), ("", "pods", "log"), ("", "pods", "exec"), ("", "pods", "attach"),
             ("", "pods", "portforward"), ("", "pods", "proxy"), ("", "pods", "eviction"), ("", "events", ""),
             ("", "secrets", ""), ("", "configmaps", ""), ("", "services", ""), ("", "serviceaccounts", "token"),
             ("", "namespaces", ""), ("", "nodes", ""), ("batch", "jobs", ""), ("apps", "deployments", ""),
             ("rbac.authorization.k8s.io", "clusterroles", ""), ("events.k8s.io", "events", "")]
VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "impersonate",
         "escalate", "bind", "approve"]
WRITES = {"create", "update", "patch", "delete", "deletecollection", "impersonate", "escalate", "bind", "approve", "*"}
READS = {("align.dev", "alignmentjobs", "", v) for v in ("get", "list", "watch")} | {
    ("", r, "", v) for r in ("pods", "events") for v in ("get", "list", "watch")} | {("", "pods", "log", "get")}


def console_rbac(namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    [result] = render_many([{"values": {"console": {"enabled": True}, **values}, "namespace": namespace,
                             "name": "align"}])
    assert "error" not in result, result
    return [d for d in documents(result["manifest"]) if d["kind"] in RBAC_KINDS
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "console"]


def allowed(cluster: RealCluster, sa_namespace: str, namespace: str) -> set[tuple[str, str, str, str]]:
    """Every (group, resource, subresource, verb) the authorizer allows the console's ServiceAccount in `namespace`."""
    user = f"system:serviceaccount:{sa_namespace}:{NAME}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"]
    out = set()
    with cluster.client() as c:
        for group, resource, sub in RESOURCES:
            for verb in VERBS:
                attrs = {"namespace": namespace, "verb": verb, "group": group, "resource": resource,
                         "subresource": sub}
                r = c.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json={
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "spec": {"user": user, "groups": groups, "resourceAttributes": attrs}})
                assert r.status_code == 201, r.text
                if r.json()["status"].get("allowed"):
                    out.add((group, resource, sub, verb))
    return out


def test_cluster_scope_console_reads_and_never_writes(realk8s: RealCluster, tmp_path: Path) -> None:
    ns, other = realk8s.namespace("console"), realk8s.namespace("elsewhere")
    docs = console_rbac(ns, {})
    apply(realk8s, docs)
    try:
        assert allowed(realk8s, ns, other) == READS  # every namespace (the console lists them all), reads only
        # The ServiceAccount's own token, through the real authenticator: reads pass, writes are Forbidden.
        kubeconfig = service_account_kubeconfig(realk8s, tmp_path / "kubeconfig", name=NAME, namespace=ns)
        as_sa = lambda *args: subprocess.run(["kubectl", *args], env={**os.environ, "KUBECONFIG": str(kubeconfig)},  # noqa: E731
                                             capture_output=True, text=True, timeout=60)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "victim"},
               "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]}}
        assert realk8s.api("POST", f"/api/v1/namespaces/{other}/pods", pod).status_code == 201
        got = as_sa("get", "pods", "-n", other, "-o", "name")
        assert got.returncode == 0 and got.stdout.strip() == "pod/victim", got.stderr
        assert as_sa("logs", "victim", "-n", other).stderr.lower().count("forbidden") == 0  # pods/log is granted
        for write in (["create", "configmap", "x", "-n", other], ["delete", "pod", "victim", "-n", other],
                      ["label", "pod", "victim", "x=y", "-n", other], ["exec", "victim", "-n", other, "--", "true"],
                      ["create", "namespace", "console-made-this"], ["get", "secrets", "-n", other]):
            proc = as_sa(*write)
            assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), (write, proc.stderr)
        # What the server says this token may do (SelfSubjectRulesReview): no write verb on any resource, apart
        # from the self-reviews every authenticated user may create (system:basic-user).
        listed = as_sa("auth", "can-i", "--list", "-n", other)
        assert listed.returncode == 0, listed.stderr
        writes = [line for line in listed.stdout.splitlines()[1:]
                  if set(line.rsplit("[", 1)[-1].strip(" ]").split()) & WRITES
                  and not line.startswith(("selfsubjectaccessreviews.", "selfsubjectrulesreviews."))]
        assert writes == [], writes
        assert any(line.startswith("alignmentjobs.align.dev") for line in listed.stdout.splitlines()), listed.stdout
    finally:
        delete(realk8s, docs)


def test_namespaced_scope_console_reads_only_its_namespaces(realk8s: RealCluster) -> None:
    ns, team, other = realk8s.namespace("console"), realk8s.namespace("team"), realk8s.namespace("elsewhere")
    docs = console_rbac(ns, {"rbac": {"scope": "namespaced", "watchNamespaces": [team]}})
    apply(realk8s, docs)
    try:
        assert allowed(realk8s, ns, team) == READS
        assert allowed(realk8s, ns, other) == set()
    finally:
        delete(realk8s, docs)
