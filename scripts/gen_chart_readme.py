#!/usr/bin/env python3
"""Generate charts/align-operator/README.md from values.yaml: each key's `##` comment becomes its description.

`--check` exits 1 when the committed README differs, or when a key has no `##` comment. The parsing is
line-based on purpose: YAML loaders drop comments, and the chart's values.yaml is simple block YAML.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "align-operator"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#:\-][^:]*?):(?:\s+(?P<rest>.*))?$")


@dataclass(frozen=True)
class Value:
    path: tuple[str, ...]
    description: str
    default: Any


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def parse(text: str) -> list[Value]:
    """Every mapping key outside lists, in file order, with the `##` lines just above it."""
    tree = yaml.safe_load(text)
    out: list[Value] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    list_indent: int | None = None  # inside a list value: its items' keys are part of the default
    for raw in text.splitlines():
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip(" "))
        if not stripped:
            continue
        if stripped.startswith("##"):
            comment.append(stripped[2:].strip())
            continue
        if stripped.startswith("#"):
            comment = []
            continue
        if list_indent is not None:
            if indent > list_indent or (indent == list_indent and stripped.startswith("- ")):
                continue
            list_indent = None
        if stripped.startswith("- "):
            list_indent = indent
            continue
        match = _KEY.match(raw)
        if not match:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"].strip().strip("\"'")
        path = tuple(k for _, k in stack) + (key,)
        stack.append((indent, key))
        out.append(Value(path, " ".join(comment), _lookup(tree, path)))
        comment = []
    return out


def _type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}.get(
        type(value), "null")


def _default(value: Any) -> str:
    if isinstance(value, dict) and value:
        return ""
    return "`" + json.dumps(value, separators=(", ", ": ")) + "`"


def _key(path: tuple[str, ...]) -> str:
    return ".".join(f'"{p}"' if "." in p else p for p in path)


INTRO = """\
# align-operator

{description}

Chart version {version}, app version {app_version}. Needs Kubernetes {kube_version}.
This file is generated from `values.yaml` by `scripts/gen_chart_readme.py`; edit the `##` comments there.

## Install

```bash
helm install align-operator charts/align-operator --namespace align-system --create-namespace
kubectl label namespace align-system pod-security.kubernetes.io/enforce=restricted
kubectl get crd alignmentjobs.align.dev
```

GPU clusters need the NVIDIA device plugin (or GPU Operator) so that `nvidia.com/gpu` is schedulable.
Step-by-step setup with Kueue, Prometheus Operator, checkpoint storage and secrets: `docs/install.md`.

## Upgrade

Helm installs `crds/` on the first install and never touches the CRD again. Apply the new CRD first:

```bash
helm show crds charts/align-operator | kubectl apply --server-side --force-conflicts -f -
helm upgrade align-operator charts/align-operator --namespace align-system --reuse-values
```

The operator runs as one replica with `strategy: Recreate`, so an upgrade briefly pauses reconciling;
trainer Jobs keep running. Runbooks and alerts: `docs/operations.md`.

## Modes

- `rbac.scope: cluster` (default): one ClusterRole, AlignmentJobs in every namespace.
- `rbac.scope: namespaced`: Roles in `rbac.watchNamespaces` only (plus a ClusterRole that can only
  list/watch CRDs and namespaces, which Kopf needs to start).

Monitoring (Prometheus Operator): `serviceMonitor.enabled`, `podMonitor.enabled`, `prometheusRule.enabled`,
`grafanaDashboard.enabled`.

## Values

| Key | Type | Default | Description |
| --- | --- | --- | --- |
"""


def render(chart: Path = CHART) -> str:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    values = parse((chart / "values.yaml").read_text())
    head = INTRO.format(description=" ".join(str(meta["description"]).split()), version=meta["version"],
                        app_version=meta["appVersion"], kube_version=f"`{meta['kubeVersion']}`")
    rows = [f"| `{_key(v.path)}` | {_type(v.default)} | {_default(v.default)} | {v.description.replace('|', '/')} |"
            for v in values]
    return head + "\n".join(rows) + "\n"


def undocumented(chart: Path = CHART) -> list[str]:
    return [_key(v.path) for v in parse((chart / "values.yaml").read_text()) if not v.description]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on drift or on an undocumented key")
    args = parser.parse_args(argv)
    missing = undocumented()
    if missing:
        print("values without a ## comment: " + ", ".join(missing), file=sys.stderr)
        return 1
    text = render()
    target = CHART / "README.md"
    if args.check:
        if not target.exists() or target.read_text() != text:
            print("charts/align-operator/README.md is out of date: run python scripts/gen_chart_readme.py",
                  file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
