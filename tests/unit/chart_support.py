"""Helpers for the chart tests: render through Helm's engine (scripts/helm_sdk.py), and check rendered objects
against Pod Security "restricted" and a no-wildcard, least-privilege RBAC policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "align-operator"
HELM_SDK = REPO / "scripts" / "helm_sdk.py"


def helm_sdk_available() -> bool:
    try:
        import helm_sdkpy  # noqa: F401
    except ImportError:
        return False
    return True


def run_helm_sdk(args: list[str], stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run scripts/helm_sdk.py with HELM_DRIVER=memory from the start (the Go runtime reads env only then)."""
    env = dict(os.environ, HELM_DRIVER="memory")
    return subprocess.run([sys.executable, str(HELM_SDK), *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


def render_many(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One subprocess renders every value set: [{values, namespace?, name?}] -> [{manifest, notes} | {error}]."""
    payload = [{"chart": str(CHART), **req} for req in requests]
    proc = run_helm_sdk(["batch"], stdin=json.dumps(payload))
    if proc.returncode != 0:
        raise RuntimeError(f"helm_sdk.py batch failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def documents(manifest: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


# --- Pod Security Standards: restricted (https://kubernetes.io/docs/concepts/security/pod-security-standards/) ---

_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
_SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                 "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                 "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                 "net.ipv4.tcp_keepalive_probes"}


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload: Pods, and pod templates of Deployments, Jobs, DaemonSets, ..."""
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        if kind == "Pod":
            yield f"Pod/{name}", doc["spec"]
        elif kind == "CronJob":
            yield f"CronJob/{name}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
            yield f"{kind}/{name}", doc["spec"]["template"]["spec"]


def pss_restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Every rule of the baseline and restricted profiles the pod spec breaks (empty when compliant)."""
    bad: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(f"{field} is true")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            bad.append(f"volume {volume.get('name')} uses {sorted(kinds - _RESTRICTED_VOLUMES)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            bad.append(f"unsafe sysctl {sysctl.get('name')}")
    if (pod_sc.get("seLinuxOptions") or {}).get("type") not in (None, "", "container_t", "container_init_t",
                                                                  "container_kvm_t", "container_engine_t"):
        bad.append("pod seLinuxOptions.type not allowed")
    if pod_sc.get("runAsUser") == 0:
        bad.append("pod runAsUser is 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        bad.append(f"pod seccompProfile {pod_seccomp}")
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
                  *(spec.get("ephemeralContainers") or [])]
    for c in containers:
        name, sc = c.get("name"), c.get("securityContext") or {}
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        caps = sc.get("capabilities") or {}
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds capabilities {caps.get('add')}")
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: does not drop ALL capabilities")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation is not false")
        if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
            bad.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile is {seccomp}")
        if sc.get("procMount") not in (None, "Default"):
            bad.append(f"{name}: procMount {sc.get('procMount')}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                bad.append(f"{name}: hostPort {port['hostPort']}")
    return bad


# --- RBAC ---

#: Verbs that let a subject grant itself more than it has.
ESCALATING_VERBS = {"escalate", "bind", "impersonate"}


def rbac_violations(docs: list[dict[str, Any]]) -> list[str]:
    """Wildcards, escalation verbs, non-resource URLs and any access to Secrets, in every (Cluster)Role."""
    bad: list[str] = []
    for doc in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc.get("aggregationRule"):
            bad.append(f"{name}: aggregationRule pulls in rules from elsewhere")
        for rule in doc.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                if any("*" in item for item in rule.get(field) or []):
                    bad.append(f"{name}: wildcard in {field}: {rule}")
            if rule.get("nonResourceURLs"):
                bad.append(f"{name}: nonResourceURLs {rule['nonResourceURLs']}")
            if set(rule.get("verbs") or []) & ESCALATING_VERBS:
                bad.append(f"{name}: escalating verbs {rule['verbs']}")
            if "" in (rule.get("apiGroups") or []) and "secrets" in (rule.get("resources") or []):
                bad.append(f"{name}: grants access to secrets")
    return bad


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Flatten rules into (apiGroup, resource, verb) triples."""
    return {(g, r, v) for rule in rules for g in rule.get("apiGroups", []) for r in rule.get("resources", [])
            for v in rule.get("verbs", [])}
