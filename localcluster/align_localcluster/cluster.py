"""The local cluster's cluster: the emulated API server on a local port, its Job controller and the node agent, in one
event loop. The Job controller stands in for kube-controller-manager and reads the emulator's store; the node
agent is an ordinary API client (HTTP only), the same one that runs pods for a real API server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Sequence

import kmock

from align_api.constants import CATEGORY, CRD_NAME, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION

from .kube import NAMESPACES, Client, Resource, write_kubeconfig
from .apiserver import ClusterEmulator
from .jobcontroller import JobController
from .nodeagent import NodeAgent

log = logging.getLogger("align.localcluster")

#: (resource, kind, namespaced, subresources, short names): what the emulated API server serves.
RESOURCES: tuple[tuple[str, str, bool, tuple[str, ...], tuple[str, ...]], ...] = (
    ("v1/namespaces", "Namespace", False, ("status",), ("ns",)),
    ("v1/pods", "Pod", True, ("status", "log", "binding"), ("po",)),
    ("v1/nodes", "Node", False, ("status",), ("no",)),
    ("v1/configmaps", "ConfigMap", True, (), ("cm",)),
    ("v1/secrets", "Secret", True, (), ()),
    ("v1/services", "Service", True, ("status",), ("svc",)),
    ("v1/events", "Event", True, (), ("ev",)),
    ("v1/persistentvolumeclaims", "PersistentVolumeClaim", True, ("status",), ("pvc",)),
    ("events.k8s.io/v1/events", "Event", True, (), ("ev",)),
    ("batch/v1/jobs", "Job", True, ("status",), ()),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, ("status",), ("crd",)),
    ("admissionregistration.k8s.io/v1/validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False, (),
     ()),
    (f"{GROUP}/{VERSION}/{PLURAL}", KIND, True, ("status",), (SHORT_NAME,)),
)
VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


class ServerStopping(Exception):
    """Raised inside every open watch stream when the local cluster stops."""


def alignmentjob_crd() -> dict[str, Any]:
    """The CRD object the API server lists (Kopf's observers read it); the generated one when available."""
    try:
        from align_api.crd import build_crd
        return build_crd()
    except ImportError:  # pragma: no cover - the API package always ships it
        return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": CRD_NAME},
                "spec": {"group": GROUP, "scope": "Namespaced",
                         "names": {"kind": KIND, "plural": PLURAL, "singular": SINGULAR,
                                   "shortNames": [SHORT_NAME], "categories": [CATEGORY]},
                         "versions": [{"name": VERSION, "served": True, "storage": True,
                                       "subresources": {"status": {}}}]}}


def make_emulator() -> ClusterEmulator:
    emulator = ClusterEmulator()
    for resource, kind, namespaced, subresources, short in RESOURCES:
        categories = {CATEGORY} if kind == KIND else set()
        emulator.resources[resource] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, singular=kind.lower(), verbs=set(VERBS), shortnames=set(short),
            categories=categories, subresources=set(subresources))
    return emulator


class Cluster:
    """API server + Job controller + node agent, all in the current event loop."""

    def __init__(self, workdir: Path, *, namespace: str = "default", port: int = 0, node_agent: bool = True,
                 command_override: Sequence[str] | None = None, cwd: Path | None = None, gpus: int | None = None,
                 extra_env: dict[str, str] | None = None, tick: float = 0.2, container_image: str | None = None):
        self.workdir = Path(workdir)
        self.namespace = namespace
        self.port = port
        self.node_agent = node_agent
        self.tick = tick
        self.emulator = make_emulator()
        self._kubelet_args = dict(command_override=command_override, cwd=cwd or Path.cwd(), gpus=gpus,
                                  extra_env=extra_env or {}, container_image=container_image)
        self._server: kmock.Server | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.client: Client | None = None
        self.agent: NodeAgent | None = None
        self._jobs_task: asyncio.Task[None] | None = None
        self.url = ""
        self.kubeconfig = self.workdir / "kubeconfig"

    async def start(self) -> None:
        import kopf
        await self.emulator.__aenter__()
        self._server = kmock.Server(self.emulator, port=self.port or None)
        await self._server.__aenter__()
        self.url = str(self._server.url).rstrip("/")
        write_kubeconfig(self.kubeconfig, self.url, self.namespace)
        self.client = Client(kopf.ConnectionInfo(server=self.url), retries=20)
        for ns in dict.fromkeys(["default", self.namespace]):
            await self.client.create_or_get(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": ns}})
        await self.client.create_or_get(Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", False),
                                        alignmentjob_crd())
        if self.node_agent:
            self.agent = NodeAgent(Client(kopf.ConnectionInfo(server=self.url), retries=20), self.workdir,
                                   name="local", on_exit=self._wake.set, resync_seconds=self.tick,
                                   **self._kubelet_args)  # type: ignore[arg-type]
            await self.agent.start()
            self._agent_task = asyncio.create_task(self._jobs_loop())

    async def stop(self) -> None:
        if self._agent_task is not None:
            self._agent_task.cancel()
            await asyncio.gather(self._agent_task, return_exceptions=True)
        if self.agent is not None:
            await self.agent.stop()
            await self.agent.client.close()
        if self.client is not None:
            await self.client.close()
        # End open watch streams (a client may keep one forever); the HTTP server then closes at once.
        for bus in list(self.emulator._buses.values()):
            await bus.put(ServerStopping("the emulated API server is stopping"))
        if self._server is not None:
            await self._server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    async def _jobs_loop(self) -> None:
        assert self.client is not None
        jobs = JobController(self.client)
        while True:
            try:
                await jobs.sync(self.emulator.list_objects("batch/v1/jobs"), self.emulator.list_objects("v1/pods"))
            except asyncio.CancelledError:
                raise
            except Exception:  # the controller must outlive one bad object, as kube-controller-manager does
                log.exception("job controller pass failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick)
            except asyncio.TimeoutError:
                pass

