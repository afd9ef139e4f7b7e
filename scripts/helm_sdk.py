#!/usr/bin/env python3
"""`helm lint` and `helm template` through Helm's own Go library (the helm-sdkpy wheel), with no helm binary.

helm-sdkpy exposes install/upgrade/lint but no client-only render. So `template` runs a real `helm install`
against an in-memory Kubernetes API (kmock's KubernetesEmulator on 127.0.0.1) with Helm's `memory` storage
driver, and returns the release manifest: the objects are rendered by Helm's engine, checked against
values.schema.json and the chart's kubeVersion, and mapped to API resources the way a cluster would.

The Go runtime inside the shared library reads its environment once, from the process's initial
environment block, so `HELM_DRIVER=memory` must be present before Python starts: this script re-executes
itself with it when it is missing. Library users (the tests) run it as a subprocess.

Usage:
    python scripts/helm_sdk.py lint charts/align-operator
    python scripts/helm_sdk.py template charts/align-operator [-f values.yaml ...] [-n NAMESPACE] [--name NAME]
    python scripts/helm_sdk.py batch < requests.json   # [{chart, values, namespace, name}] -> [{manifest, notes} | {error}]
    python scripts/helm_sdk.py release --kubeconfig F < steps.json  # against a real cluster, Helm's Secret storage:
        # [{action: install|upgrade|uninstall, chart, values, namespace, name}] -> [{status, manifest} | {error}]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

#: Kubernetes version the emulated API server reports (the chart's kubeVersion is checked against it).
KUBE_VERSION = ("1", "33")

#: API resources the emulated cluster serves: "group/version/plural" -> (kind, namespaced).
#: Includes the Prometheus Operator's and cert-manager's CRDs, as on a cluster where they are installed.
RESOURCES: dict[str, tuple[str, bool]] = {
    "v1/namespaces": ("Namespace", False),
    "v1/secrets": ("Secret", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/serviceaccounts": ("ServiceAccount", True),
    "v1/services": ("Service", True),
    "v1/pods": ("Pod", True),
    "v1/events": ("Event", True),
    "apps/v1/deployments": ("Deployment", True),
    "batch/v1/jobs": ("Job", True),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
    "admissionregistration.k8s.io/v1/validatingwebhookconfigurations": ("ValidatingWebhookConfiguration", False),
    "cert-manager.io/v1/certificates": ("Certificate", True),
    "cert-manager.io/v1/issuers": ("Issuer", True),
    "monitoring.coreos.com/v1/servicemonitors": ("ServiceMonitor", True),
    "monitoring.coreos.com/v1/podmonitors": ("PodMonitor", True),
    "monitoring.coreos.com/v1/prometheusrules": ("PrometheusRule", True),
    "align.dev/v1alpha1/alignmentjobs": ("AlignmentJob", True),
}
_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


def _ensure_memory_driver() -> None:
    """Re-exec with HELM_DRIVER=memory: Helm's Go runtime never sees variables set after the process started."""
    if os.environ.get("HELM_DRIVER") != "memory":
        env = dict(os.environ, HELM_DRIVER="memory")
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


def _kubeconfig(server: str, namespace: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
        "clusters": [{"name": "emulated", "cluster": {"server": server.rstrip("/")}}],
        "users": [{"name": "emulated", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "emulated",
                                                       "namespace": namespace}}],
    })


def _serve_cluster(kmock: Any, emulator: Any) -> None:
    """Declare the API surface; kmock's core-group discovery says groupVersion "/v1", which client-go rejects."""
    for path, (kind, namespaced) in RESOURCES.items():
        emulator.resources[path] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=_VERBS)
    emulator["get /api/v1"] << {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
        "resources": [{"name": p.split("/")[-1], "kind": k, "namespaced": ns, "singularName": k.lower(),
                       "verbs": sorted(_VERBS)} for p, (k, ns) in RESOURCES.items() if p.startswith("v1/")],
    }
    emulator["get /version"] << {"major": KUBE_VERSION[0], "minor": KUBE_VERSION[1],
                                 "gitVersion": f"v{KUBE_VERSION[0]}.{KUBE_VERSION[1]}.0", "platform": "linux/amd64"}


async def install(chart: str, values: dict[str, Any] | None = None, namespace: str = "align-system",
                  name: str = "align") -> dict[str, Any]:
    """The release `helm install` makes: manifest (templates only: Helm never renders crds/), info.notes, ..."""
    import helm_sdkpy
    import kmock

    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        _serve_cluster(kmock, emulator)
        config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=_kubeconfig(str(server.url), namespace))
        return await helm_sdkpy.Install(config).run(name, str(Path(chart).resolve()), values=values or {},
                                                     wait=False, timeout=60)


async def render(chart: str, values: dict[str, Any] | None = None, namespace: str = "align-system",
                 name: str = "align") -> str:
    """`helm template`: the rendered manifest."""
    return str((await install(chart, values, namespace, name)).get("manifest", ""))


#: Helm's support.Severity: UnknownSev, InfoSev, WarningSev, ErrorSev.
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


async def lint(chart: str) -> dict[str, Any]:
    """Helm's linter on the chart with its own values.yaml; messages as {severity, path} (Go errors lose their text in JSON)."""
    import helm_sdkpy

    config = helm_sdkpy.Configuration(namespace="default", kubeconfig=_kubeconfig("http://127.0.0.1:1", "default"))
    result = await helm_sdkpy.Lint(config).run(str(Path(chart).resolve()))
    messages = [{"severity": SEVERITY.get(m.get("Severity", 0), "UNKNOWN"), "path": m.get("Path", "")}
                for m in result.get("Messages") or []]
    return {"charts": result.get("TotalChartsLinted", 0), "messages": messages,
            "errors": len(result.get("Errors") or [])}


def _load_values(files: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for file in files:
        merged = _merge(merged, yaml.safe_load(Path(file).read_text()) or {})
    return merged


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


async def _batch(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for req in requests:
        try:
            release = await install(req["chart"], req.get("values"), req.get("namespace", "align-system"),
                                    req.get("name", "align"))
            results.append({"manifest": release.get("manifest", ""),
                            "notes": (release.get("info") or {}).get("notes", "")})
        except Exception as exc:  # the caller asserts on the message, per request
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    return results


async def _release(kubeconfig: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Install, upgrade and uninstall releases on a real cluster (Helm's default Secret storage driver)."""
    import helm_sdkpy

    results = []
    for step in steps:
        config = helm_sdkpy.Configuration(namespace=step.get("namespace", "default"), kubeconfig=kubeconfig)
        try:
            if step["action"] == "install":
                release = await helm_sdkpy.Install(config).run(step["name"], str(Path(step["chart"]).resolve()),
                                                                 values=step.get("values") or {}, wait=False, timeout=120)
            elif step["action"] == "upgrade":
                release = await helm_sdkpy.Upgrade(config).run(step["name"], str(Path(step["chart"]).resolve()),
                                                                 values=step.get("values") or {}, wait=False, timeout=120)
            else:
                release = (await helm_sdkpy.Uninstall(config).run(step["name"], wait=False, timeout=120)).get("release", {})
            results.append({"status": (release.get("info") or {}).get("status"), "manifest": release.get("manifest", "")})
        except Exception as exc:  # the caller asserts on the message, per step
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_lint = sub.add_parser("lint", help="run Helm's linter")
    p_lint.add_argument("chart")
    p_tpl = sub.add_parser("template", help="render the chart's templates with Helm's engine")
    p_tpl.add_argument("chart")
    p_tpl.add_argument("-f", "--values", action="append", default=[])
    p_tpl.add_argument("-n", "--namespace", default="align-system")
    p_tpl.add_argument("--name", default="align")
    sub.add_parser("batch", help="render many value sets: JSON list on stdin, JSON list on stdout")
    p_rel = sub.add_parser("release", help="install/upgrade/uninstall on a real cluster: JSON steps on stdin")
    p_rel.add_argument("--kubeconfig", required=True)
    args = parser.parse_args(argv)
    if args.command == "release":
        if os.environ.get("HELM_DRIVER") == "memory":
            raise SystemExit("release needs Helm's Secret storage: unset HELM_DRIVER")
        kubeconfig = Path(args.kubeconfig).read_text()
        print(json.dumps(asyncio.run(_release(kubeconfig, json.load(sys.stdin)))))
        return 0
    _ensure_memory_driver()

    if args.command == "lint":
        report = asyncio.run(lint(args.chart))
        print(json.dumps(report, indent=2))
        bad = report["errors"] or any(m["severity"] == "ERROR" for m in report["messages"])
        if bad:  # the lint JSON drops Go error texts; a render through the same engine says what is wrong
            try:
                asyncio.run(render(args.chart))
            except Exception as exc:
                print(f"render: {exc}", file=sys.stderr)
        return 1 if bad else 0
    if args.command == "template":
        print(asyncio.run(render(args.chart, _load_values(args.values), args.namespace, args.name)))
        return 0
    print(json.dumps(asyncio.run(_batch(json.load(sys.stdin)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
