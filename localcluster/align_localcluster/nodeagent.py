"""The node agent: one Kubernetes Node whose pods run as local processes, on any API server, over HTTP only.

It does what a kubelet (and, on a control plane without one, the scheduler) does for the pods that trainer Jobs
make, through the API server alone, so the same agent serves the local cluster's emulator and a real kube-apiserver:
- registers a Node (capacity cpu/memory/pods and `nvidia.com/gpu` when `gpus` is set; address InternalIP
  127.0.0.1; `status.daemonEndpoints.kubeletEndpoint.port` = its log endpoint) and keeps it Ready with heartbeats;
- lists and watches pods; with `bind=True` binds Pending pods that have no node and fit this one
  (`pods/binding`, as kube-scheduler does), and reports why a pod does not fit (PodScheduled=False,
  Unschedulable); runs the pods bound to it (`kubelet.Kubelet`: processes, volumes from ConfigMaps and Secrets
  read over the API, pod status with exit code and termination message);
- serves the kubelet's log endpoint over HTTPS (self-signed; `GET /containerLogs/{ns}/{pod}/{container}` with
  tailLines, limitBytes, follow), which is how the API server answers `kubectl logs` (`pods/{name}/log`);
- on stop, kills its processes, reports each pod's final status (Failed, reason Terminated) and marks the Node
  NotReady; after a crash, the next agent of the Node stops the pods it cannot follow and reports them Failed
  (reason NodeAgentRestarted).

Python API (used by the local cluster and `alignctl local up`)::

    agent = NodeAgent(Client(connection_from_kubeconfig(path)), workdir=Path("/tmp/node"), name="align-node",
                      gpus=None, bind=True)
    await agent.start()        # Node registered, log endpoint up (agent.log_port), pods being watched
    ...
    await agent.stop()         # processes stopped, final pod statuses written, Node NotReady

Or from a shell: `python -m align_localcluster.nodeagent --kubeconfig KUBECONFIG --workdir DIR` (SIGTERM or
SIGINT stops it as `stop()` does). The credentials need: pods (get/list/watch/delete, status patch, binding
create), nodes (create/get/patch, status patch), configmaps and secrets (get), as a kubelet's do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .kube import PODS, ApiError, Client, NotFound, Resource, connection_from_kubeconfig
from .apiserver import now_rfc3339
from .kubelet import Kubelet
from .logserver import LogServer

log = logging.getLogger("align.nodeagent")
#: the longest any one stage of NodeAgent.stop may take (pods get their grace period on top)
STOP_STAGE_SECONDS = 15.0

NODES = Resource("v1", "nodes", namespaced=False)
GPU = "nvidia.com/gpu"
#: Seconds before a pod that fits no node is looked at again (nodes come and go).
RECHECK_SECONDS = 30.0


# ------------------------------------------------------------------------------------------ pure parts
def node_object(name: str, *, port: int, gpus: int | None, labels: Mapping[str, str] | None = None,
                cpu: int | None = None, memory_bytes: int | None = None) -> dict[str, Any]:
    """The Node this agent registers (status included: a Node may be created with its status)."""
    capacity = {"cpu": str(cpu or os.cpu_count() or 1), "memory": str(memory_bytes or _memory_bytes()), "pods": "110"}
    if gpus is not None:
        capacity[GPU] = str(gpus)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                              "align.dev/node-agent": "true", **(labels or {})}},
        "status": {
            "capacity": capacity, "allocatable": dict(capacity),
            # InternalIP only: the API server dials the first address of its preferred types (Hostname first by
            # default), and the node's name need not resolve.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": [ready_condition(True)],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "align-node-agent",
                         "containerRuntimeVersion": "process://local", "kubeProxyVersion": "", "osImage": "local",
                         "kernelVersion": os.uname().release, "machineID": "", "systemUUID": "", "bootID": ""},
        },
    }


def ready_condition(ready: bool) -> dict[str, Any]:
    now = now_rfc3339()
    return {"type": "Ready", "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletStopped",
            "message": "align node agent is posting ready status" if ready else "align node agent stopped",
            "lastHeartbeatTime": now, "lastTransitionTime": now}


def unschedulable(pod: Mapping[str, Any], node_labels: Mapping[str, str], gpus: int | None) -> str | None:
    """Why `pod` cannot go to this node (the scheduler's message), or None if it fits."""
    spec = pod.get("spec") or {}
    wanted = sum(int(((c.get("resources") or {}).get("limits") or {}).get(GPU, 0) or 0)
                 for c in spec.get("containers") or [])
    if gpus is not None and wanted > gpus:
        return f"0/1 nodes are available: 1 Insufficient {GPU} (requested {wanted}, node has {gpus})."
    selector = spec.get("nodeSelector") or {}
    if any(node_labels.get(key) != value for key, value in selector.items()):
        return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    return None


def wants_binding(pod: Mapping[str, Any]) -> bool:
    """A pod no scheduler has placed yet, that is not finished or going away."""
    return not (pod.get("spec") or {}).get("nodeName") and not pod["metadata"].get("deletionTimestamp") \
        and (pod.get("status") or {}).get("phase", "Pending") == "Pending"


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


# ------------------------------------------------------------------------------------------ the agent
@dataclass
class NodeAgent:
    """One Node, its pods as processes; see the module docstring."""

    client: Client
    workdir: Path
    name: str = "align-node"
    gpus: int | None = None
    bind: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)   # extra Node labels (pods' nodeSelector matches them)
    log_port: int = 0                     # 0: any free port (read it back from agent.log_port after start)
    heartbeat_seconds: float = 10.0
    resync_seconds: float = 1.0           # retry pods that could not start (a Secret still missing, ...)
    cwd: Path = field(default_factory=Path.cwd)
    command_override: Sequence[str] | None = None
    container_image: str | None = None    # run pods as containers of this image (podman) instead of processes
    extra_env: Mapping[str, str] = field(default_factory=dict)
    max_grace_seconds: float = 10.0
    on_exit: Callable[[], None] | None = None   # called when a pod's process ends (the emulator's Job controller)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    kubelet: Kubelet = field(init=False)
    #: Pods that do not fit here: (what was reported, "" if another node fits; when it was decided).
    _unschedulable: dict[tuple[str, str], tuple[str, float]] = field(default_factory=dict, init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _logs: LogServer | None = field(default=None, init=False)
    _synced: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.kubelet = Kubelet(self.client, self.workdir, node_name=self.name, cwd=self.cwd,
                               command_override=self.command_override, extra_env=dict(self.extra_env),
                               container_image=self.container_image,
                               max_grace_seconds=self.max_grace_seconds, on_exit=self._exited)

    @property
    def node_labels(self) -> dict[str, str]:
        return node_object(self.name, port=0, gpus=self.gpus, labels=self.labels)["metadata"]["labels"]

    async def start(self) -> None:
        self._logs = LogServer(self.workdir, lambda ns, pod: (ns, pod) in self.kubelet.containers)
        self.log_port = await self._logs.start(self.log_port)
        await self._register()
        self._tasks = [asyncio.create_task(self._watch_loop(), name="node-agent-watch"),
                       asyncio.create_task(self._pass_loop(), name="node-agent-pods"),
                       asyncio.create_task(self._heartbeat_loop(), name="node-agent-heartbeat")]
        log.info("node %s registered; log endpoint https://127.0.0.1:%d", self.name, self.log_port)

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Until the first list of pods has been read (tests, `alignctl local up`)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def stop(self, *, report: bool = True) -> None:
        """Stop the pods' processes (final statuses with `report`), mark the Node NotReady; a second call is a no-op."""
        if self._logs is None:
            return
        for task in self._tasks:
            task.cancel()
        # every stage is bounded: stopping a node must not hang on one stuck piece (it names the piece instead)
        await self._bounded("its watches", asyncio.gather(*self._tasks, return_exceptions=True), STOP_STAGE_SECONDS)
        self._tasks = []
        await self._bounded("stopping its pods", self.kubelet.stop_all(report=report),
                            self.max_grace_seconds + STOP_STAGE_SECONDS)
        try:
            await self._bounded("marking the Node NotReady", self.client.patch(
                NODES, self.name, {"status": {"conditions": [ready_condition(False)]}}, subresource="status"),
                STOP_STAGE_SECONDS)
        except ApiError as exc:
            log.warning("could not mark node %s NotReady: %s", self.name, exc)
        await self._bounded("its log server", self._logs.stop(), STOP_STAGE_SECONDS)
        self._logs = None

    async def _bounded(self, what: str, awaitable: Any, seconds: float) -> None:
        try:
            await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            log.warning("node %s: %s did not finish within %.0f s while stopping; going on", self.name, what, seconds)

    # -------------------------------------------------------------------------------- node
    async def _register(self) -> None:
        node = node_object(self.name, port=self.log_port, gpus=self.gpus, labels=self.labels)
        _, created = await self.client.create_or_get(NODES, node)
        if not created:  # a restart: same name, new port and capacity
            await self.client.patch(NODES, self.name, {"metadata": {"labels": node["metadata"]["labels"]}})
            await self.client.patch(NODES, self.name, {"status": node["status"]}, subresource="status")

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.client.patch(NODES, self.name, {"status": {"conditions": [ready_condition(True)]}},
                                        subresource="status")
            except NotFound:
                await self._register()  # someone deleted the Node: a kubelet registers again
            except ApiError as exc:
                log.warning("node heartbeat failed: %s", exc)

    # -------------------------------------------------------------------------------- pods
    async def _watch_loop(self) -> None:
        """List, then watch from the list's version; on any break (410 Gone, network) list again."""
        while True:
            try:
                items, version = await self.client.list_with_version(PODS)
                self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in items}
                self._synced.set()
                self._wake.set()
                async for event in self.client.watch(PODS, version):
                    obj = event.get("object") or {}
                    if event.get("type") == "BOOKMARK":
                        continue
                    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                    if event.get("type") == "DELETED":
                        self.pods.pop(key, None)
                    else:
                        self.pods[key] = obj
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a kubelet outlives a broken watch; the relist repairs it
                log.info("pod watch ended (%s); listing again", exc)
                await asyncio.sleep(0.5)

    async def _pass_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.resync_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not self._synced.is_set():
                continue
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the agent must outlive one bad object, as a kubelet does
                log.exception("node agent pass failed")

    async def sync_once(self) -> None:
        """One pass: bind what fits, then run exactly the pods bound to this node."""
        pods = list(self.pods.values())
        for key in [k for k in self._unschedulable if k not in self.pods]:
            del self._unschedulable[key]
        if self.bind:
            for pod in [p for p in pods if wants_binding(p)]:
                await self._place(pod)
        mine = [p for p in self.pods.values() if (p.get("spec") or {}).get("nodeName") == self.name]
        await self.kubelet.sync(mine)

    async def _place(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        reason = unschedulable(pod, self.node_labels, self.gpus)
        if reason is not None:
            decided = self._unschedulable.get(key)
            if decided is not None and time.monotonic() - decided[1] < RECHECK_SECONDS:
                return
            elsewhere = await self._fits_elsewhere(pod)
            self._unschedulable[key] = ("" if elsewhere else reason, time.monotonic())
            if not elsewhere and (decided or ("", 0.0))[0] != reason:
                await self.kubelet._report(pod, {"phase": "Pending", "conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": reason,
                    "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}]})
            return
        self._unschedulable.pop(key, None)
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"], "uid": meta.get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": self.name}}
        try:
            await self.client.request("POST", PODS.url(meta["namespace"], meta["name"], "binding"), body=binding)
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or bound meanwhile (by someone else or an earlier pass)
                return
            raise
        pod.setdefault("spec", {})["nodeName"] = self.name  # the watch confirms; start it in this pass

    async def _fits_elsewhere(self, pod: Mapping[str, Any]) -> bool:
        """Another Ready node fits the pod (its agent binds it): then this one says nothing."""
        for node in await self.client.list(NODES):
            status = node.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            gpus = int((status.get("allocatable") or {}).get(GPU, 0) or 0)
            if node["metadata"]["name"] != self.name and ready and \
                    unschedulable(pod, node["metadata"].get("labels") or {}, gpus) is None:
                return True
        return False

    def _exited(self) -> None:
        self._wake.set()
        if self.on_exit is not None:
            self.on_exit()


# ------------------------------------------------------------------------------------------ command line
async def _serve(args: argparse.Namespace) -> None:
    client = Client(connection_from_kubeconfig(args.kubeconfig), retries=20)
    labels = dict(item.split("=", 1) for item in args.label)
    agent = NodeAgent(client, Path(args.workdir), name=args.name, gpus=args.gpus, bind=not args.no_bind,
                      container_image=args.container_image,
                      log_port=args.port, labels=labels)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    print(f"node {agent.name}: log endpoint https://127.0.0.1:{agent.log_port}", flush=True)
    try:
        await stop.wait()
    finally:
        await agent.stop()
        await client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m align_localcluster.nodeagent",
                                     description="Run pods of one Kubernetes Node as local processes.")
    parser.add_argument("--kubeconfig", required=True, help="credentials for the API server (a kubelet's rights)")
    parser.add_argument("--workdir", required=True, help="pod volumes, logs and the log endpoint's certificate")
    parser.add_argument("--name", default="align-node", help="Node name (default align-node)")
    parser.add_argument("--gpus", type=int, default=None, help="nvidia.com/gpu capacity to advertise")
    parser.add_argument("--port", type=int, default=0, help="log endpoint port (default: any free port)")
    parser.add_argument("--no-bind", action="store_true", help="only run pods a scheduler bound to this node")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra Node label (pods select it with nodeSelector); repeatable")
    parser.add_argument("--container-image", default=None, metavar="IMAGE",
                        help="run pods as containers of IMAGE with podman (e.g. localhost/align-trainer:dev from "
                             "scripts/build_images.sh) instead of local processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(args))

