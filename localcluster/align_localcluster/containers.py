"""Run a rendered pod's container with podman (runc), the way a kubelet would: the image the chart deploys, not
this virtualenv.

Pure translation, pod spec -> `podman run` argv: command/args (`--entrypoint` + args, as Kubernetes' command
replaces ENTRYPOINT and args replace CMD), env (already resolved by the caller: values, Secret and field
references), volume mounts (host directories the caller prepared, read-only where the pod says so), the security
context (runAsUser/runAsGroup/fsGroup, readOnlyRootFilesystem, capabilities drop, no privilege escalation) and
resource limits (cpu, memory). The termination message file is bound at /dev/termination-log as on a node.

The network is the host's (`--network host`) by default, as the process runtime shares it: the operator scrapes
the trainer's metrics port on 127.0.0.1 and a judge on loopback stays reachable. `network="none"` isolates it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

#: podman settings (runc, no default ulimits): crun fails on setrlimit in nested containers such as this machine.
CONTAINERS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "images" / "containers.conf"
TERMINATION_LOG_PATH = "/dev/termination-log"
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


@dataclass(frozen=True)
class Mount:
    container_path: str
    host_path: Path
    read_only: bool = False


def cpus(quantity: str) -> str:
    """Kubernetes CPU quantity ("500m", "2") -> podman --cpus ("0.5", "2")."""
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else str(float(quantity))


def memory_bytes(quantity: str) -> int:
    """Kubernetes memory quantity ("512Mi", "2G", "1000") -> bytes."""
    match = _QUANTITY.match(str(quantity))
    if not match or match.group(2) not in _MEMORY_UNITS:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def security_flags(pod_security: Mapping[str, Any], container_security: Mapping[str, Any]) -> list[str]:
    """The pod's and container's securityContext as podman flags (the container's fields win, as in Kubernetes)."""
    merged = {**pod_security, **container_security}
    flags: list[str] = []
    user = merged.get("runAsUser")
    if user is not None:
        group = merged.get("runAsGroup", user)
        flags += ["--user", f"{user}:{group}"]
    elif merged.get("runAsNonRoot"):
        raise ValueError("runAsNonRoot without runAsUser: the image's USER would have to be checked")
    if pod_security.get("fsGroup") is not None:
        flags += ["--group-add", str(pod_security["fsGroup"])]
    if merged.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if merged.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for cap in (merged.get("capabilities") or {}).get("drop") or []:
        flags += ["--cap-drop", str(cap)]
    for cap in (merged.get("capabilities") or {}).get("add") or []:
        flags += ["--cap-add", str(cap)]
    if merged.get("privileged"):
        flags.append("--privileged")
    return flags


def resource_flags(resources: Mapping[str, Any]) -> list[str]:
    limits = resources.get("limits") or {}
    flags: list[str] = []
    if limits.get("cpu"):
        flags += ["--cpus", cpus(str(limits["cpu"]))]
    if limits.get("memory"):
        flags += ["--memory", str(memory_bytes(str(limits["memory"])))]
    return flags


def podman_run_argv(*, name: str, image: str, container: Mapping[str, Any], pod_spec: Mapping[str, Any],
                    env: Mapping[str, str], mounts: Sequence[Mount], termination_log: Path,
                    workdir: str | None = None, network: str = "host", podman: str = "podman") -> list[str]:
    """`podman run` for one container of a rendered pod. The caller resolved env and prepared the mounts."""
    argv = [podman, "run", "--rm", "--name", name, "--network", network, "--pull", "never",
            "--stop-timeout", str(int(pod_spec.get("terminationGracePeriodSeconds", 30)))]
    argv += security_flags(pod_spec.get("securityContext") or {}, container.get("securityContext") or {})
    argv += resource_flags(container.get("resources") or {})
    for mount in mounts:
        argv += ["--volume", f"{mount.host_path}:{mount.container_path}:{'ro' if mount.read_only else 'rw'}"]
    argv += ["--volume", f"{termination_log}:{TERMINATION_LOG_PATH}:rw"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if workdir or container.get("workingDir"):
        argv += ["--workdir", str(workdir or container["workingDir"])]
    command = list(container.get("command") or [])
    if command:
        argv += ["--entrypoint", json.dumps(command)]
    argv.append(image)
    argv += [str(arg) for arg in container.get("args") or []]
    return argv


def podman_env() -> dict[str, str]:
    """Environment for the podman CLI itself (not the container's)."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
