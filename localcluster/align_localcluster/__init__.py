"""A local cluster: an emulated Kubernetes API, a node agent that runs pods as processes, the operator.

Python API (used by `alignctl local run`, the tests and anyone scripting a local run)::

    from align_localcluster import LocalCluster

    with LocalCluster(workdir="/tmp/sb") as sb:          # or sb = LocalCluster(...).start(); ...; sb.stop()
        sb.url                                     # "http://127.0.0.1:<port>": the API server
        sb.kubeconfig                              # Path of a kubeconfig for it (KUBECONFIG=... alignctl get)
        sb.namespace                               # "default"
        sb.create_secret("hf", {"token": "..."})   # Secrets the pods reference (values stay in the local cluster)
        sb.apply("examples/dpo.yaml")              # dict | YAML text | path; any kind; create or merge-patch
        job = sb.wait("dpo-tiny", timeout=600)     # until phase Succeeded/Failed; returns the AlignmentJob
        sb.get("dpo-tiny")                         # AlignmentJob dict or None; sb.get("x-trainer", kind="Job")
        sb.list(kind="Pod"); sb.patch(name, {...}); sb.delete(name); sb.events(name); sb.logs(pod_name)

Constructor options (all keyword, all optional):
    workdir           local directory for pod volumes, logs and the kubeconfig (default: a temp dir, removed on stop)
    namespace         namespace of applied objects without one (default "default")
    operator          "thread" (Kopf in the local cluster's event loop), "process" (`python -m align_operator` as a
                      child process: `restart_operator()` / `kill_operator()` work) or "none" (bring your own)
    settings          dict of align_operator.settings.Settings overrides for the operator (e.g.
                      {"scrape_interval_seconds": 1}); the local cluster defaults are fast polls
    trainer_command   argv that replaces every pod's command (a fake trainer for tests); default: the pod's own
                      command, run with this Python (`python -m align_trainer --config ...`)
    cwd               working directory of pod processes (default: the current directory)
    gpus              GPUs the node offers; pods asking for more stay Pending/Unschedulable (default: ignore)
    node_agent        False: no pods are ever started (API and operator only, e.g. for benchmarks)
    port              API server port (default: any free port)
    env               extra environment for pod processes
    container_image   run every pod as a container of this image with podman (runc), e.g. the trainer image
                      scripts/build_images.sh builds: the pod's command, env, volumes, security context and
                      limits as rendered (see containers.py); default: pods are local processes

Fault injection for tests: `sb.emulator.inject(503, times=3, method="POST", resource="jobs")` refuses the next
matching requests without acting on them (see `apiserver.ClusterEmulator`).
The local cluster runs in a background thread with its own event loop; every method here is thread-safe.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

import httpx
import yaml

from align_api import yamlio
from align_api.constants import API_VERSION, KIND, PLURAL, TERMINAL_PHASES

from .kube import Resource
from .cluster import Cluster

__all__ = ["LocalCluster", "LOCAL_SETTINGS", "poll_until", "resource_of"]

T = TypeVar("T")

#: Operator settings for the local cluster: quick polling, no metrics port clash.
LOCAL_SETTINGS: dict[str, Any] = {
    "scrape_interval_seconds": 1.0, "status_interval_seconds": 2.0, "upstream_poll_seconds": 1.0,
    "metrics_port": 0, "termination_grace_seconds": 30, "trainer_image": "align-trainer:local",
    "image_pull_policy": "Never",
}

_KINDS: dict[str, Resource] = {
    KIND: Resource(API_VERSION, PLURAL), "Job": Resource("batch/v1", "jobs"), "Pod": Resource("v1", "pods"),
    "ConfigMap": Resource("v1", "configmaps"), "Service": Resource("v1", "services"),
    "Secret": Resource("v1", "secrets"), "Event": Resource("v1", "events"),
    "Namespace": Resource("v1", "namespaces", namespaced=False), "Node": Resource("v1", "nodes", namespaced=False),
    "PersistentVolumeClaim": Resource("v1", "persistentvolumeclaims"),
}


def resource_of(kind: str) -> Resource:
    """The Resource for a kind name ("AlignmentJob", "Job", "Pod", ...)."""
    try:
        return _KINDS[kind]
    except KeyError:
        raise ValueError(f"the local cluster does not serve kind {kind!r}; known: {', '.join(_KINDS)}") from None


def poll_until(check: Callable[[], T | None], timeout: float = 60.0, message: str = "condition not met",
               poll: float = 0.2) -> T:
    """Call `check()` until it returns something truthy and return that; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} within {timeout:.0f}s")
        time.sleep(poll)


class LocalCluster:
    """A local cluster with the operator; see the module docstring for the API."""

    def __init__(self, workdir: str | os.PathLike[str] | None = None, *, namespace: str = "default",
                 operator: str = "thread", settings: Mapping[str, Any] | None = None,
                 trainer_command: Sequence[str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 gpus: int | None = None, node_agent: bool = True, port: int = 0,
                 env: Mapping[str, str] | None = None, operator_log: str | os.PathLike[str] | None = None,
                 container_image: str | None = None):
        if operator not in ("thread", "process", "none"):
            raise ValueError("operator must be 'thread', 'process' or 'none'")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="align-local-")).resolve()
        self.namespace = namespace
        self.operator_mode = operator
        self.settings = {**LOCAL_SETTINGS, **(settings or {})}
        self.operator_log = Path(operator_log) if operator_log else self.workdir / "operator.log"
        self._cluster = Cluster(self.workdir, namespace=namespace, port=port, node_agent=node_agent,
                                command_override=trainer_command, cwd=Path(cwd).resolve() if cwd else None,
                                gpus=gpus, extra_env=dict(env or {}), container_image=container_image)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self._operator_task: asyncio.Future[Any] | None = None
        self._operator_stop: asyncio.Event | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalCluster":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="align-localcluster", daemon=True)
        self._thread.start()
        self._call(self._cluster.start())
        self._http = httpx.Client(base_url=self.url, timeout=30.0)
        if self.operator_mode != "none":
            self.start_operator()
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self.stop_operator()
        self._call(self._cluster.stop())
        if self._http is not None:
            self._http.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._cluster.url

    @property
    def kubeconfig(self) -> Path:
        return self._cluster.kubeconfig

    @property
    def agent(self) -> Any:
        """The node agent (`nodeagent.NodeAgent`, Node "local") or None with node_agent=False."""
        return self._cluster.agent

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        """Run a coroutine in the local cluster's event loop (e.g. `sb.call(sb.agent.stop())`)."""
        return self._call(coro, timeout)

    @property
    def emulator(self) -> Any:
        """The ClusterEmulator (kmock) behind the API: fault injection, direct object inspection."""
        return self._cluster.emulator

    def operator_env(self) -> dict[str, str]:
        """Environment of an operator process pointed at this local cluster."""
        from align_operator.settings import Settings
        env = dict(os.environ)
        env.update(Settings.from_env({}, **self.settings).to_env())
        env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    # ------------------------------------------------------------------ the operator
    def start_operator(self) -> None:
        if self.operator_mode == "process":
            log = open(self.operator_log, "ab")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "align_operator", "--kubeconfig", str(self.kubeconfig), "--all-namespaces"],
                env=self.operator_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        elif self.operator_mode == "thread":
            # Kopf warns that it cannot install signal handlers off the main thread; here that is intended.
            logging.getLogger("kopf._core.reactor.running").addFilter(_NotMainThreadFilter())
            from align_operator.runner import operate
            from align_operator.settings import Settings
            assert self._loop is not None
            self._operator_stop = asyncio.Event()  # created in the local cluster loop's thread below
            settings = Settings.from_env({}, **self.settings)

            async def _run() -> None:
                self._operator_stop = asyncio.Event()
                await operate(settings, kubeconfig=str(self.kubeconfig), clusterwide=True,
                              stop_flag=self._operator_stop)
            self._operator_task = asyncio.run_coroutine_threadsafe(_run(), self._loop)  # type: ignore[assignment]

    def stop_operator(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._operator_task is not None and self._loop is not None:
            stop = self._operator_stop
            if stop is not None:
                self._loop.call_soon_threadsafe(stop.set)
            try:
                self._operator_task.result(timeout=30)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a crashed operator is already logged by Kopf
                pass
            self._operator_task = None

    def kill_operator(self) -> None:
        """SIGKILL the operator process (no cleanup, no finalizer removal): a crash, for restart tests."""
        if self._process is None:
            raise RuntimeError("kill_operator needs operator='process'")
        self._process.kill()
        self._process.wait()
        self._process = None

    def restart_operator(self, *, kill: bool = True) -> None:
        if kill and self._process is not None:
            self.kill_operator()
        else:
            self.stop_operator()
        self.start_operator()

    @property
    def operator_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # ------------------------------------------------------------------ objects
    def apply(self, manifest: Mapping[str, Any] | str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Create each document, or merge-patch it when it exists. Returns the stored objects."""
        return [self._apply_one(doc) for doc in _documents(manifest)]

    def _apply_one(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        resource = resource_of(doc.get("kind", ""))
        doc = dict(doc)
        meta = dict(doc.get("metadata") or {})
        if resource.namespaced:
            meta.setdefault("namespace", self.namespace)
        doc["metadata"] = meta
        ns = meta.get("namespace")
        response = self._request("POST", resource.url(ns), json=doc, ok=(409,))
        if response.status_code != 409:
            return response.json()
        patch = {k: v for k, v in doc.items() if k not in ("status",)}
        return self._request("PATCH", resource.url(ns, meta["name"]), json=patch,
                             headers={"Content-Type": "application/merge-patch+json"}).json()

    def get(self, name: str, *, kind: str = KIND, namespace: str | None = None) -> dict[str, Any] | None:
        resource = resource_of(kind)
        response = self._request("GET", resource.url(namespace or self.namespace, name), ok=(404,))
        return None if response.status_code == 404 else response.json()

    def list(self, kind: str = KIND, *, namespace: str | None = None, labels: str | None = None) -> list[dict[str, Any]]:
        resource = resource_of(kind)
        params = {"labelSelector": labels} if labels else None
        response = self._request("GET", resource.url(namespace or self.namespace), params=params)
        return list(response.json().get("items", []))

    def patch(self, name: str, patch: Mapping[str, Any], *, kind: str = KIND, namespace: str | None = None,
              subresource: str | None = None) -> dict[str, Any]:
        resource = resource_of(kind)
        return self._request("PATCH", resource.url(namespace or self.namespace, name, subresource), json=patch,
                             headers={"Content-Type": "application/merge-patch+json"}).json()

    def delete(self, name: str, *, kind: str = KIND, namespace: str | None = None) -> bool:
        resource = resource_of(kind)
        return self._request("DELETE", resource.url(namespace or self.namespace, name), ok=(404,)).status_code != 404

    def create_secret(self, name: str, data: Mapping[str, str], *, namespace: str | None = None) -> dict[str, Any]:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        return self.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                           "metadata": {"name": name, "namespace": namespace or self.namespace}, "data": encoded})[0]

    def events(self, name: str | None = None, *, namespace: str | None = None) -> list[dict[str, Any]]:
        """Kubernetes Events, oldest first; only those about object `name` when given."""
        items = self.list("Event", namespace=namespace)
        if name is not None:
            items = [e for e in items if (e.get("involvedObject") or {}).get("name") == name]
        return items

    def logs(self, pod: str, *, namespace: str | None = None) -> str:
        return self._request("GET", resource_of("Pod").url(namespace or self.namespace, pod, "log")).text

    def wait(self, name: str, *, until: Iterable[str] = tuple(TERMINAL_PHASES), timeout: float = 300.0,
             namespace: str | None = None, poll: float = 0.2) -> dict[str, Any]:
        """Wait until the AlignmentJob's phase is one of `until`; returns it (TimeoutError otherwise)."""
        phases = {str(p) for p in until}

        def check() -> dict[str, Any] | None:
            job = self.get(name, namespace=namespace)
            return job if job and (job.get("status") or {}).get("phase") in phases else None
        return self.wait_for(check, timeout=timeout, poll=poll,
                             message=f"AlignmentJob {name} did not reach {sorted(phases)}")

    def wait_for(self, check: Callable[[], T | None], *, timeout: float = 60.0, poll: float = 0.2,
                 message: str = "condition not met") -> T:
        """Poll `check()` until it returns something truthy; TimeoutError after `timeout` seconds."""
        return poll_until(check, timeout, message, poll)

    # ------------------------------------------------------------------ plumbing
    def _call(self, coro: Any, timeout: float = 60.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        assert self._http is not None, "the local cluster is not started"
        for attempt in range(20):
            response = self._http.request(method, path, **kwargs)
            if response.status_code in (429, 500, 502, 503, 504) and attempt < 19:
                time.sleep(0.05 * (attempt + 1))  # injected faults are for the operator, not for the test's client
                continue
            if response.status_code >= 400 and response.status_code not in ok:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
            return response
        raise AssertionError("unreachable")


class _NotMainThreadFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "not in the main thread" not in record.getMessage()


def _documents(manifest: Mapping[str, Any] | str | os.PathLike[str]) -> list[dict[str, Any]]:
    if isinstance(manifest, Mapping):
        return [dict(manifest)]
    text = str(manifest)
    if isinstance(manifest, os.PathLike) or ("\n" not in text and Path(text).is_file()):
        text = Path(manifest).read_text()
    return [doc for doc in yamlio.load_all(text) if doc]  # as kubectl reads it


def dump(obj: Any, output: str = "yaml") -> str:
    return json.dumps(obj, indent=2) if output == "json" else yaml.safe_dump(obj, sort_keys=False)
