"""A pod's command, environment and files as this machine runs them (the node agent's kubelet): $(VAR) expansion,
paths under mount points mapped to local volume directories, the image's interpreters replaced by this
environment's, ConfigMap and Secret items written out, downward-API fields."""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

_FIELD_ANNOTATION = re.compile(r"metadata\.annotations\['([^']+)'\]")


def pod_argv(argv: list[str], env: Mapping[str, str], mounts: list[tuple[str, Path]]) -> list[str]:
    """The local command for a pod's command + args: $(VAR) expanded and the pod's paths mapped to their local
    volumes first, then this host's interpreter swapped in, so a host path (a venv under /tmp, where pods
    also mount a /tmp volume) is never mistaken for a path inside the pod."""
    return _local_command([map_path(_expand(arg, env), mounts) for arg in argv])


def _local_command(argv: list[str]) -> list[str]:
    """Run the image's interpreters with this environment's (the local 'image' is this virtualenv)."""
    if not argv:
        return argv
    head = os.path.basename(argv[0])
    if head in ("python", "python3") or re.fullmatch(r"python3\.\d+", head):
        return [sys.executable, *argv[1:]]
    if head == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *argv[1:]]
    if not os.path.isabs(argv[0]) and shutil.which(argv[0]) is None:
        candidate = Path(sys.executable).parent / argv[0]
        if candidate.exists():
            return [str(candidate), *argv[1:]]
    return argv


def _expand(arg: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args ($$ escapes)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), arg)


def map_path(arg: str, mounts: list[tuple[str, Path]]) -> str:
    for mount_path, local in mounts:
        if arg == mount_path or arg.startswith(mount_path + "/"):
            return str(local) + arg[len(mount_path):]
        if "=" in arg:
            key, _, value = arg.partition("=")
            if value == mount_path or value.startswith(mount_path + "/"):
                return f"{key}={local}{value[len(mount_path):]}"
    return arg


def write_items(path: Path, data: Mapping[str, str], items: list[dict[str, str]] | None) -> None:
    selected = {item["key"]: item.get("path", item["key"]) for item in items} if items else {k: k for k in data}
    for key, target in selected.items():
        if key in data:
            (path / target).parent.mkdir(parents=True, exist_ok=True)
            (path / target).write_text(data[key])


def secret_data(secret: Mapping[str, Any] | None) -> dict[str, str] | None:
    if secret is None:
        return None
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def field_value(pod: Mapping[str, Any], path: str, node_name: str) -> str:
    match = _FIELD_ANNOTATION.fullmatch(path)
    if match:
        return str((pod["metadata"].get("annotations") or {}).get(match.group(1), ""))
    simple = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
              "metadata.uid": pod["metadata"].get("uid", ""), "status.podIP": "127.0.0.1",
              "spec.nodeName": node_name, "status.hostIP": "127.0.0.1"}
    return str(simple.get(path, ""))


#: A pod's DNS name under a headless Service: <hostname>.<service>[.<namespace>.svc[.cluster.local]]
_POD_DNS = re.compile(r"^(?P<host>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
                      r"(\.(?P<ns>[a-z0-9-]+)\.svc(\.cluster\.local)?)?$")


def rendezvous_argv(argv: list[str], namespace: str, headless_service: Callable[[str, str], Mapping[str, Any] | None],
                    ports: dict[tuple[str, str, int], int]) -> list[str]:
    """torchrun's rendezvous in the local cluster: `--master-addr=<job>-0.<service>` (the rank-0 pod's name under the
    job's headless Service, as cluster DNS resolves it) becomes the address every local pod has, 127.0.0.1,
    and `--master-port=<a port of that Service>` one free local port per (namespace, Service, port), shared
    by all pods of the job (several jobs, and other programs on this host, must not collide on 29500).
    Names that are not a pod under a headless Service are left alone, as DNS would fail them on a cluster."""
    service: str | None = None
    out: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        match = _POD_DNS.match(value) if key == "--master-addr" and sep else None
        if match and match.group("ns") in (None, namespace) and headless_service(namespace, match.group("service")):
            service = match.group("service")
            arg = f"{key}=127.0.0.1"
        out.append(arg)
    if service is None:
        return out
    declared = {int(p["port"]) for p in (headless_service(namespace, service) or {}).get("spec", {}).get("ports") or []}
    for index, arg in enumerate(out):
        key, sep, value = arg.partition("=")
        if key == "--master-port" and sep and value.isdigit() and int(value) in declared:
            local = ports.setdefault((namespace, service, int(value)), _free_port())
            out[index] = f"{key}={local}"
    return out


def rendezvous_services(argv: Sequence[str], namespace: str) -> list[str]:
    """Services named by `--master-addr=<pod>.<service>[...]` in this namespace (to look up before rendezvous_argv)."""
    names = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        match = _POD_DNS.match(value) if key == "--master-addr" and sep else None
        if match and match.group("ns") in (None, namespace):
            names.append(match.group("service"))
    return names


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
