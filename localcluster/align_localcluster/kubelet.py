"""The node agent's kubelet half: runs each pod bound to its Node as a local process and reports back.

Everything it knows about the cluster comes through the API server over HTTP (the pods it is handed by
`nodeagent.NodeAgent`, ConfigMaps and Secrets read with `Client`); what it reports is pod status (phase,
conditions, containerStatuses with exit code and termination message) through `pods/{name}/status`.
A pod's volumes become local directories under the local cluster's work directory (configMap and secret
volumes are written out, emptyDir is per pod, a persistentVolumeClaim is one directory per claim that
outlives pods, so checkpoints survive restarts as on a cluster). Paths under mount points in the
command, args and env are rewritten to those directories. The pod IP is 127.0.0.1; the trainer's metrics
port is replaced by a free local port (written into the trainer config and the pod's
`prometheus.io/port` annotation, which is where the operator looks). The termination message is read
from $ALIGN_TERMINATION_LOG, falling back to the log tail as `FallbackToLogsOnError` does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .kube import PODS, ApiError, Client, NotFound
from .apiserver import now_rfc3339
from .containers import TERMINATION_LOG_PATH, Mount, podman_env, podman_run_argv
from .podenv import map_path, pod_argv, rendezvous_argv
from .podinputs import PodInputs, host_paths

__all__ = ["Kubelet", "free_port", "log_path", "pod_argv", "rendezvous_argv"]

TERMINATION_LOG_ENV = "ALIGN_TERMINATION_LOG"
MAX_MESSAGE = 4096


def log_path(workdir: Path, namespace: str, pod: str) -> Path:
    """Where the output of pod `namespace/pod` goes (and stays after it ends, for `kubectl logs`)."""
    return workdir / "pods" / namespace / pod / "log.txt"


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
    container: str = "main"
    image: str = ""
    waiter: asyncio.Task[None] | None = None
    killed: bool = False


@dataclass
class Kubelet(PodInputs):
    """Starts, watches and stops pod processes; reports pod status through the API."""

    client: Client
    workdir: Path
    node_name: str = "local"
    cwd: Path = field(default_factory=Path.cwd)
    command_override: Sequence[str] | None = None
    #: Run pods as containers of this image with podman (runc) instead of local processes: the image the chart
    #: deploys, with the pod's command, env, volumes, security context and limits (containers.py).
    container_image: str | None = None
    failing_images: tuple[str, ...] = ("invalid.example/",)
    max_grace_seconds: float = 10.0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    containers: dict[tuple[str, str], Container] = field(default_factory=dict)
    #: Pods that cannot start, with what was last reported for them (reported again only when it changes).
    blocked: dict[tuple[str, str], str] = field(default_factory=dict)
    on_exit: Callable[[], None] | None = None
    #: uids of the pods this agent started (a Running pod bound here that is not among them is an orphan).
    started: set[str] = field(default_factory=set)
    #: (namespace, headless Service, its port) -> the local port the job's ranks rendezvous on (see rendezvous_argv)
    rendezvous_ports: dict[tuple[str, str, int], int] = field(default_factory=dict)

    async def sync(self, pods: list[dict[str, Any]]) -> None:
        """Bring the processes in line with the pods bound to this node (all of them, every call)."""
        present = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods
                   if not p["metadata"].get("deletionTimestamp")}
        for key, container in list(self.containers.items()):
            if key not in present and not container.killed:
                await self._kill(container)
        for key in [k for k in self.blocked if k not in present]:
            del self.blocked[key]
        for pod in pods:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            if pod["metadata"].get("deletionTimestamp"):
                if key not in self.containers:  # stopped (above, or never started): let the server remove it
                    await self._finish_deletion(pod)
                continue
            phase = (pod.get("status") or {}).get("phase")
            if key in self.containers or phase in ("Succeeded", "Failed"):
                continue
            if phase == "Running":
                if pod["metadata"].get("uid") not in self.started:  # an earlier agent's, which died meanwhile
                    await self._orphaned(pod)
                continue  # ours, finished: the watch has not brought the final status yet
            await self._start(pod)

    async def stop_all(self, *, report: bool = True) -> None:
        """Stop every process; with `report`, each pod's final status says the node shut it down."""
        running = [c for c in self.containers.values() if not c.killed]
        await asyncio.gather(*(self._kill(c) for c in running), return_exceptions=True)
        if report:
            await asyncio.gather(*(self._report_shutdown(c) for c in running), return_exceptions=True)

    async def _report_shutdown(self, container: Container) -> None:
        code = container.process.returncode
        code = 128 - code if code is not None and code < 0 else (code if code is not None else 137)
        message = "Pod was terminated in response to the node agent stopping."
        await self._report_named(container.namespace, container.pod, {
            "phase": "Failed", "reason": "Terminated", "message": message,
            "conditions": _conditions(scheduled=True, ready=False),
            "containerStatuses": [{"name": container.container, "image": container.image, "imageID": "",
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": code, "reason": "Error", "message": message,
                                                            "startedAt": container.started_at,
                                                            "finishedAt": now_rfc3339()}}}]})

    async def _orphaned(self, pod: Mapping[str, Any]) -> None:
        """A pod Running on this node that this agent did not start: an earlier agent died without stopping it.
        Its process cannot be followed any more, so stop it (its pid was recorded) and report the pod Failed; the
        Job controller makes a new pod, which resumes from the last checkpoint."""
        meta = pod["metadata"]
        pidfile = log_path(self.workdir, meta["namespace"], meta["name"]).parent / "pid"
        if pidfile.is_file() and pidfile.read_text().strip().isdigit():
            _signal_group(int(pidfile.read_text()), signal.SIGKILL)
            pidfile.unlink()
        message = "The node agent restarted while the container ran; it was stopped."
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        started = next((s.get("state", {}).get("running", {}).get("startedAt") for s in
                        (pod.get("status") or {}).get("containerStatuses") or []), None) or now_rfc3339()
        await self._report(pod, {
            "phase": "Failed", "reason": "NodeAgentRestarted", "message": message,
            "conditions": _conditions(scheduled=True, ready=False),
            "containerStatuses": [{"name": container.get("name", "main"), "image": container.get("image", ""),
                                   "imageID": "", "ready": False, "started": False, "restartCount": 0,
                                   "state": {"terminated": {"exitCode": 137, "reason": "Error", "message": message,
                                                            "startedAt": started, "finishedAt": now_rfc3339()}}}]})

    async def _finish_deletion(self, pod: Mapping[str, Any]) -> None:
        """The containers are gone: remove the pod object now (a real server waits for this from its node)."""
        meta = pod["metadata"]
        try:
            await self.client.request("DELETE", PODS.url(meta["namespace"], meta["name"]), body={
                "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta.get("uid")}})
        except (NotFound, ApiError) as exc:
            if not isinstance(exc, NotFound) and exc.status != 409:  # 409: a newer pod of the same name
                raise

    # ------------------------------------------------------------------ start
    async def _start(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        container = (spec.get("containers") or [{}])[0]
        blocker = self._blocker(pod, container)
        if blocker is not None:
            await self._report_blocked(pod, blocker)
            return
        poddir = log_path(self.workdir, meta["namespace"], meta["name"]).parent
        poddir.mkdir(parents=True, exist_ok=True)
        try:
            mounts = await self._mount_volumes(pod, container, poddir)
            env = await self._env(pod, container)
        except LookupError as exc:  # a missing Secret/ConfigMap: the kubelet waits, as on a cluster
            await self._report_blocked(pod, {"phase": "Pending", "containerStatuses": [
                _waiting(container, "CreateContainerConfigError", str(exc))]})
            return
        self.blocked.pop((meta["namespace"], meta["name"]), None)
        declared = {item["name"] for item in container.get("env") or []}  # the pod's own, not the host's
        pod_env = {k: v for k, v in env.items() if k in declared}
        env = {k: map_path(v, mounts) if k in declared else v for k, v in env.items()}
        port = free_port()
        self._rewrite_config(mounts, port)
        termination_log = poddir / "termination-log"
        termination_log.write_text("")
        extra = {"POD_IP": "127.0.0.1", "HOSTNAME": spec.get("hostname", meta["name"])}
        env.update({TERMINATION_LOG_ENV: str(termination_log), **extra})
        if self.container_image:
            argv = self._container_argv(pod, container, mounts, {**pod_env, **extra}, termination_log)
        else:
            argv = list(self.command_override) if self.command_override else \
                [*(container.get("command") or []), *(container.get("args") or [])]
            argv = pod_argv(argv, env, mounts)
            services = await self._headless_services(argv, meta["namespace"])
            argv = rendezvous_argv(argv, meta["namespace"], lambda ns, name: services.get((ns, name)),
                                   self.rendezvous_ports)
        output = log_path(self.workdir, meta["namespace"], meta["name"])
        with open(output, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=str(self.cwd), env=podman_env() if self.container_image else env, stdout=log,
                stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        grace = min(float(spec.get("terminationGracePeriodSeconds", 30)), self.max_grace_seconds)
        self.started.add(meta.get("uid", ""))
        (poddir / "pid").write_text(str(process.pid))  # a restarted agent stops what it cannot follow (_orphaned)
        running = Container(meta["name"], meta["namespace"], process, output, termination_log, now_rfc3339(), grace,
                            container=container.get("name", "main"), image=container.get("image", ""))
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
                                   "imageID": "", "ready": True, "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": running.started_at}}}],
        })

    def _container_argv(self, pod: Mapping[str, Any], container: Mapping[str, Any], mounts: list[tuple[str, Path]],
                        env: dict[str, str], termination_log: Path) -> list[str]:
        """`podman run` for the pod: its volumes as bind mounts (owned as fsGroup makes them on a node), the
        manifest's local files read-only at their own paths (alignctl local run makes data paths absolute: on a
        cluster they would be on a volume), the pod's env only (not this host's)."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        security = spec.get("securityContext") or {}
        owner = security.get("runAsUser")
        group = security.get("fsGroup", security.get("runAsGroup", owner))
        declared = {m["mountPath"].rstrip("/"): bool(m.get("readOnly")) for m in container.get("volumeMounts") or []}
        binds = []
        for mount_path, local in mounts:
            if mount_path not in declared:
                continue
            if not declared[mount_path] and owner is not None and os.geteuid() == 0:
                for path in (local, *local.rglob("*")):
                    os.chown(path, owner, group)
            binds.append(Mount(mount_path, local, declared[mount_path]))
        for path in host_paths(mounts):
            binds.append(Mount(str(path), path, True))
        termination_log.chmod(0o666)
        name = f"align-{meta['namespace']}-{meta['name']}"[:63]
        return podman_run_argv(name=name, image=self.container_image or "", container=container, pod_spec=spec,
                               env={**env, TERMINATION_LOG_ENV: TERMINATION_LOG_PATH}, mounts=binds,
                               termination_log=termination_log)

    def _blocker(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any] | None:
        """Why this pod cannot start here (image pull), as a pod status; None if it can. (Whether it fits the
        node is decided before binding: `nodeagent.unschedulable`.)"""
        image = container.get("image", "")
        if any(image.startswith(prefix) for prefix in self.failing_images):
            return {"phase": "Pending", "conditions": _conditions(scheduled=True, ready=False),
                    "containerStatuses": [_waiting(container, "ImagePullBackOff",
                                                   f'Back-off pulling image "{image}": not found')]}
        return None

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
                                   "imageID": "", "ready": False, "started": False, "restartCount": 0,
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
            if self.container_image:  # the podman client is gone; its container (under conmon) is not
                remover = await asyncio.create_subprocess_exec(
                    "podman", "rm", "-f", "-t", "0", f"align-{container.namespace}-{container.pod}"[:63],
                    env=podman_env(), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                await remover.wait()
        self.containers.pop((container.namespace, container.pod), None)

    async def _report_blocked(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        signature = repr([(c.get("type"), c.get("reason"), c.get("message")) for c in status.get("conditions") or []]
                         + [c.get("state") for c in status.get("containerStatuses") or []])
        if self.blocked.get(key) != signature:
            self.blocked[key] = signature
            await self._report(pod, status)

    async def _report(self, pod: Mapping[str, Any], status: dict[str, Any]) -> None:
        await self._report_named(pod["metadata"]["namespace"], pod["metadata"]["name"], status)

    async def _report_named(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            await self.client.patch(PODS, name, {"status": status}, namespace, subresource="status")
        except NotFound:
            pass  # deleted meanwhile


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _waiting(container: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
    return {"name": container.get("name", "main"), "image": container.get("image", ""), "imageID": "", "ready": False,
            "started": False, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}


def _conditions(*, scheduled: bool, ready: bool) -> list[dict[str, Any]]:
    now = now_rfc3339()
    flag = lambda value: "True" if value else "False"  # noqa: E731
    return [{"type": "PodScheduled", "status": flag(scheduled), "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag(ready), "lastTransitionTime": now},
            {"type": "Ready", "status": flag(ready), "lastTransitionTime": now}]
