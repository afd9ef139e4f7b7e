"""The sandbox's kubelet: runs each pod's container command as a local process and reports back.

A pod's volumes become local directories under the sandbox's work directory (configMap and secret
volumes are written out, emptyDir is per pod, a persistentVolumeClaim is one directory per claim that
outlives pods, so checkpoints survive restarts as on a cluster). Paths under mount points in the
command, args and env are rewritten to those directories. The pod IP is 127.0.0.1; the trainer's metrics
port is replaced by a free local port (written into the trainer config and the pod's
`prometheus.io/port` annotation, which is where the operator looks). The termination message is read
from $ALIGN_TERMINATION_LOG, falling back to the log tail as `FallbackToLogsOnError` does.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from align_api import yamlio
from align_api.constants import CONFIG_FILE_NAME

from ..kube import PODS, Client, NotFound
from .apiserver import ClusterEmulator, now_rfc3339

TERMINATION_LOG_ENV = "ALIGN_TERMINATION_LOG"
MAX_MESSAGE = 4096
_FIELD_ANNOTATION = re.compile(r"metadata\.annotations\['([^']+)'\]")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Container:
    """A running container process."""

    pod: str
    namespace: str
    process: asyncio.subprocess.Process
    log_path: Path
    termination_log: Path
    started_at: str
    grace: float
    waiter: asyncio.Task[None] | None = None
    killed: bool = False


@dataclass
class Kubelet:
    """Starts, watches and stops pod processes; reports pod status through the API."""

    emulator: ClusterEmulator
    client: Client
    workdir: Path
    cwd: Path = field(default_factory=Path.cwd)
    command_override: Sequence[str] | None = None
    gpus: int | None = None
    failing_images: tuple[str, ...] = ("invalid.example/",)
    max_grace_seconds: float = 10.0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    containers: dict[tuple[str, str], Container] = field(default_factory=dict)
    #: Pods that cannot start, with what was last reported for them (reported again only when it changes).
    blocked: dict[tuple[str, str], str] = field(default_factory=dict)
    on_exit: Callable[[], None] | None = None

    async def sync(self, pods: list[dict[str, Any]]) -> None:
        present = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
        for key, container in list(self.containers.items()):
            if key not in present and not container.killed:
                await self._kill(container)
        for key in [k for k in self.blocked if k not in present]:
            del self.blocked[key]
        for pod in pods:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            phase = (pod.get("status") or {}).get("phase")
            if key in self.containers or phase in ("Succeeded", "Failed", "Running"):
                continue
            await self._start(pod)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self._kill(c) for c in self.containers.values() if not c.killed),
                             return_exceptions=True)

    # ------------------------------------------------------------------ start
    async def _start(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        container = (spec.get("containers") or [{}])[0]
        blocker = self._blocker(pod, container)
        if blocker is not None:
            await self._report_blocked(pod, blocker)
            return
        poddir = self.workdir / "pods" / meta["namespace"] / meta["name"]
        poddir.mkdir(parents=True, exist_ok=True)
        try:
            mounts = self._mount_volumes(pod, container, poddir)
            env = self._env(pod, container)
        except LookupError as exc:  # a missing Secret/ConfigMap: the kubelet waits, as on a cluster
            await self._report_blocked(pod, {"phase": "Pending", "containerStatuses": [
                _waiting(container, "CreateContainerConfigError", str(exc))]})
            return
        self.blocked.pop((meta["namespace"], meta["name"]), None)
        declared = {item["name"] for item in container.get("env") or []}  # the pod's own, not the host's
        env = {k: _map_path(v, mounts) if k in declared else v for k, v in env.items()}
        port = free_port()
        self._rewrite_config(mounts, port)
        termination_log = poddir / "termination-log"
        termination_log.write_text("")
        env.update({TERMINATION_LOG_ENV: str(termination_log), "POD_IP": "127.0.0.1", "HOSTNAME": spec.get("hostname", meta["name"])})
        argv = list(self.command_override) if self.command_override else \
            [*(container.get("command") or []), *(container.get("args") or [])]
        argv = pod_argv(argv, env, mounts)
        log_path = poddir / "log.txt"
        self.emulator.pod_logs[(meta["namespace"], meta["name"])] = str(log_path)
        with open(log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=str(self.cwd), env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        grace = min(float(spec.get("terminationGracePeriodSeconds", 30)), self.max_grace_seconds)
        running = Container(meta["name"], meta["namespace"], process, log_path, termination_log, now_rfc3339(), grace)
        self.containers[(meta["namespace"], meta["name"])] = running
        running.waiter = asyncio.create_task(self._wait(pod, container, running))
        annotations = dict(meta.get("annotations") or {})
        if "prometheus.io/port" in annotations or container.get("ports"):
            try:
                await self.client.patch(PODS, meta["name"], {"metadata": {"annotations": {"prometheus.io/port": str(port)}}},
                                        meta["namespace"])
            except NotFound:
                return
        await self._report(pod, {
            "phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "hostIP": "127.0.0.1",
            "startTime": running.started_at,
            "conditions": _conditions(scheduled=True, ready=True),
            "containerStatuses": [{"name": container.get("name", "main"), "image": container.get("image", ""),
                                   "ready": True, "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": running.started_at}}}],
        })

    def _blocker(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any] | None:
        """Why this pod cannot start here (unschedulable, image pull), as a pod status; None if it can."""
        limits = (container.get("resources") or {}).get("limits") or {}
        wanted = int(limits.get("nvidia.com/gpu", 0) or 0)
        if self.gpus is not None and wanted > self.gpus:
            return {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": f"0/1 nodes are available: 1 Insufficient nvidia.com/gpu (requested {wanted}, node has {self.gpus}).",
                "lastTransitionTime": now_rfc3339()}]}
        image = container.get("image", "")
        if any(image.startswith(prefix) for prefix in self.failing_images):
            return {"phase": "Pending", "conditions": _conditions(scheduled=True, ready=False),
                    "containerStatuses": [_waiting(container, "ImagePullBackOff",
                                                   f'Back-off pulling image "{image}": not found')]}
        return None

    def _mount_volumes(self, pod: Mapping[str, Any], container: Mapping[str, Any], poddir: Path) -> list[tuple[str, Path]]:
        ns = pod["metadata"]["namespace"]
        volumes: dict[str, Path] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                path = self.workdir / "volumes" / ns / volume["persistentVolumeClaim"]["claimName"]
            else:
                path = poddir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                obj = self.emulator.get_object("v1/configmaps", ns, volume["configMap"]["name"])
                if obj is None:
                    raise LookupError(f'configmap "{volume["configMap"]["name"]}" not found')
                _write_items(path, obj.get("data") or {}, volume["configMap"].get("items"))
            elif "secret" in volume:
                obj = self.emulator.get_object("v1/secrets", ns, volume["secret"]["secretName"])
                if obj is None:
                    raise LookupError(f'secret "{volume["secret"]["secretName"]}" not found')
                _write_items(path, _secret_data(obj) or {}, volume["secret"].get("items"))
            volumes[name] = path
        mounts = []
        for mount in container.get("volumeMounts") or []:
            local = volumes.get(mount["name"])
            if local is None:
                continue
            if mount.get("subPath"):
                local = local / mount["subPath"]
            mounts.append((mount["mountPath"].rstrip("/"), local))
            claim = next((v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
                          if v["name"] == mount["name"] and "persistentVolumeClaim" in v), None)
            if claim and Path(mount["mountPath"]).name == claim and not mount.get("subPath"):
                # Claims mounted as <root>/<claim> make <root> itself a place (e.g. $ALIGN_PVC_ROOT).
                mounts.append((str(Path(mount["mountPath"]).parent), local.parent))
        return sorted(dict(mounts).items(), key=lambda m: -len(m[0]))

    def _env(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(self.extra_env)
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self.emulator.get_object("v1/secrets", ns, ref["name"])
                data = _secret_data(secret) if secret else None
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise LookupError(f'secret "{ref["name"]}" not found' if data is None else
                                      f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}")
                env[item["name"]] = data[ref["key"]]
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                obj = self.emulator.get_object("v1/configmaps", ns, ref["name"]) or {}
                if ref["key"] in (obj.get("data") or {}):
                    env[item["name"]] = obj["data"][ref["key"]]
            elif "fieldRef" in source:
                env[item["name"]] = _field(pod, source["fieldRef"]["fieldPath"])
        return env

    @staticmethod
    def _rewrite_config(mounts: list[tuple[str, Path]], port: int) -> None:
        """Point the trainer config at the local metrics port (several pods share one host here)."""
        for _, local in mounts:
            config = local / CONFIG_FILE_NAME
            if config.is_file():
                doc = yamlio.load(config.read_text()) or {}
                if isinstance(doc.get("spec"), dict):
                    doc["spec"].setdefault("metrics", {})["port"] = port
                    config.write_text(yaml.safe_dump(doc, sort_keys=False))

    # ------------------------------------------------------------------ run, stop, report
    async def _wait(self, pod: dict[str, Any], container: Mapping[str, Any], running: Container) -> None:
        code = await running.process.wait()
        if code < 0:  # killed by a signal: report as the container runtime does
            code = 128 - code
        if running.killed:
            self.containers.pop((running.namespace, running.pod), None)
            return
        message = running.termination_log.read_text(errors="replace")[:MAX_MESSAGE] if running.termination_log.exists() else ""
        if not message.strip() and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = running.log_path.read_text(errors="replace").splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        finished = now_rfc3339()
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else ("OOMKilled" if code == 137 and
                                                                                 "OOM" in message else "Error"),
                      "startedAt": running.started_at, "finishedAt": finished}
        if message.strip():
            terminated["message"] = message
        await self._report(pod, {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": _conditions(scheduled=True, ready=False),
            "containerStatuses": [{"name": container.get("name", "main"), "image": container.get("image", ""),
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"terminated": terminated}}],
        })
        self.containers.pop((running.namespace, running.pod), None)
        if self.on_exit:
            self.on_exit()

    async def _kill(self, container: Container) -> None:
        container.killed = True
        if container.process.returncode is not None:
            self.containers.pop((container.namespace, container.pod), None)
            return
        _signal_group(container.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(container.process.wait(), timeout=container.grace)
        except asyncio.TimeoutError:
            _signal_group(container.process.pid, signal.SIGKILL)
            await container.process.wait()
        self.containers.pop((container.namespace, container.pod), None)

    async def _report_blocked(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        signature = repr([(c.get("type"), c.get("reason"), c.get("message")) for c in status.get("conditions") or []]
                         + [c.get("state") for c in status.get("containerStatuses") or []])
        if self.blocked.get(key) != signature:
            self.blocked[key] = signature
            await self._report(pod, status)

    async def _report(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        try:
            await self.client.patch(PODS, pod["metadata"]["name"], {"status": status}, pod["metadata"]["namespace"],
                                    subresource="status")
        except NotFound:
            pass  # deleted meanwhile


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pod_argv(argv: list[str], env: Mapping[str, str], mounts: list[tuple[str, Path]]) -> list[str]:
    """The local command for a pod's command + args: $(VAR) expanded and the pod's paths mapped to their local
    volumes first, then this host's interpreter swapped in, so a host path (a venv under /tmp, where pods
    also mount a /tmp volume) is never mistaken for a path inside the pod."""
    return _local_command([_map_path(_expand(arg, env), mounts) for arg in argv])


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


def _map_path(arg: str, mounts: list[tuple[str, Path]]) -> str:
    for mount_path, local in mounts:
        if arg == mount_path or arg.startswith(mount_path + "/"):
            return str(local) + arg[len(mount_path):]
        if "=" in arg:
            key, _, value = arg.partition("=")
            if value == mount_path or value.startswith(mount_path + "/"):
                return f"{key}={local}{value[len(mount_path):]}"
    return arg


def _write_items(path: Path, data: Mapping[str, str], items: list[dict[str, str]] | None) -> None:
    selected = {item["key"]: item.get("path", item["key"]) for item in items} if items else {k: k for k in data}
    for key, target in selected.items():
        if key in data:
            (path / target).parent.mkdir(parents=True, exist_ok=True)
            (path / target).write_text(data[key])


def _secret_data(secret: Mapping[str, Any] | None) -> dict[str, str] | None:
    if secret is None:
        return None
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def _field(pod: Mapping[str, Any], path: str) -> str:
    match = _FIELD_ANNOTATION.fullmatch(path)
    if match:
        return str((pod["metadata"].get("annotations") or {}).get(match.group(1), ""))
    simple = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": pod["metadata"]["namespace"],
              "metadata.uid": pod["metadata"].get("uid", ""), "status.podIP": "127.0.0.1",
              "spec.nodeName": "sandbox", "status.hostIP": "127.0.0.1"}
    return str(simple.get(path, ""))


def _waiting(container: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
    return {"name": container.get("name", "main"), "image": container.get("image", ""), "ready": False,
            "started": False, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}


def _conditions(*, scheduled: bool, ready: bool) -> list[dict[str, Any]]:
    now = now_rfc3339()
    flag = lambda value: "True" if value else "False"  # noqa: E731
    return [{"type": "PodScheduled", "status": flag(scheduled), "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag(ready), "lastTransitionTime": now},
            {"type": "Ready", "status": flag(ready), "lastTransitionTime": now}]
