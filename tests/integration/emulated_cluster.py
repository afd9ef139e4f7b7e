"""An emulated Kubernetes API (kmock's KubernetesEmulator) served over HTTP from a background thread.

Synchronous clients (the `kubernetes` package, alignctl) talk to it like to a real API server; tests put
objects in place (an AlignmentJob with a status, pods, events) without running the operator.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

import kmock
import yaml

from align_api import GROUP, KIND, PLURAL, SHORT_NAME, VERSION

RESOURCES = {
    "v1/namespaces": kmock.ResourceInfo(kind="Namespace", namespaced=False),
    "v1/pods": kmock.ResourceInfo(kind="Pod", namespaced=True, subresources={"log"}),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True),
    "v1/configmaps": kmock.ResourceInfo(kind="ConfigMap", namespaced=True),
    "batch/v1/jobs": kmock.ResourceInfo(kind="Job", namespaced=True, subresources={"status"}),
    f"{GROUP}/{VERSION}/{PLURAL}": kmock.ResourceInfo(kind=KIND, namespaced=True, shortnames={SHORT_NAME},
                                                      subresources={"status"}),
}
AJ = kmock.resource(GROUP, VERSION, PLURAL)
POD = kmock.resource("", "v1", "pods")
EVENT = kmock.resource("", "v1", "events")
JOB = kmock.resource("batch", "v1", "jobs")
T = TypeVar("T")


class EmulatedCluster:
    """`with EmulatedCluster() as cluster:` -- cluster.url, cluster.kubeconfig(path), cluster.put(...)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kmock")
        self.url = ""
        self.emulator: kmock.KubernetesEmulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        async def serve() -> None:
            async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
                for key, info in RESOURCES.items():
                    emulator.resources[key] = info
                self.emulator, self.url = emulator, str(server.url).rstrip("/")
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        asyncio.run(serve())

    def __enter__(self) -> "EmulatedCluster":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the emulated API server did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def kubeconfig(self, path: Path, namespace: str = "default", context: str = "emulated") -> Path:
        """A kubeconfig file pointing at this server (so tests exercise --kubeconfig/--context)."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "not-checked"}}],
            "contexts": [{"name": context, "context": {"cluster": "emulated", "user": "tester", "namespace": namespace}}],
        }))
        return path

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's event loop: the emulator's state is not meant for other threads."""
        assert self._loop is not None

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def put(self, resource: kmock.resource, namespace: str | None, name: str, obj: dict[str, Any]) -> None:
        """Store an object as if some controller had created it (no watch event is sent)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("name", name)
        if namespace:
            meta.setdefault("namespace", namespace)

        def store() -> None:
            assert self.emulator is not None
            self.emulator.objects[resource, namespace, name] = obj

        self._in_loop(store)

    def get(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            assert self.emulator is not None
            key = (resource, namespace, name)
            if key not in self.emulator.objects or self.emulator.objects[key].deleted:
                return None
            return dict(self.emulator.objects[key].raw)

        return self._in_loop(read)

    def serve_log(self, namespace: str, pod: str, text: str) -> None:
        """What GET .../pods/<pod>/log returns."""
        def react() -> None:
            assert self.emulator is not None
            self.emulator["get", POD, kmock.namespace(namespace), kmock.name(pod), kmock.subresource("log")] << \
                text.encode()

        self._in_loop(react)

    @property
    def requests(self) -> list[Any]:
        return self._in_loop(lambda: list(self.emulator) if self.emulator is not None else [])  # iterating a kmock handler yields the requests it served
