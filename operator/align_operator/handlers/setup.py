"""Operator startup: Kopf settings, credentials, the shared API client and the operator's metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Coroutine, Mapping

import aiohttp
import kopf

from .. import metrics
from . import admission
from .lifecycle import NamespaceDefaults
from ..kube import Client, connection_from_kubeconfig
from ..renderers.names import JOB_LABEL, MANAGED_BY
from ..settings import Settings

#: The children the operator watches, as Kopf selects resources, and the server-side selector of ours.
OWN_CHILDREN = (("batch", "jobs"), ("v1", "pods"))
CHILD_SELECTOR = ",".join([JOB_LABEL, *(f"{key}={value}" for key, value in MANAGED_BY.items())])


class Wakeups:
    """The status task of each live AlignmentJob, its wake-up event and the latest body its watch events brought.

    The tasks are the operator's own (asyncio tasks started from the AlignmentJob's watch events, cancelled at
    cleanup), not Kopf daemons: Kopf gives every daemon a finalizer, and with one an AlignmentJob could not be
    deleted while the operator is down, nor the CRD after `helm uninstall`. Job and pod events wake a job's task;
    the AlignmentJob's deletion ends it."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._gone: set[tuple[str, str]] = set()
        self._bodies: dict[tuple[str, str], dict[str, Any]] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    def event(self, key: tuple[str, str]) -> asyncio.Event:
        self._gone.discard(key)  # a new task: an object of that name exists again
        return self._events.setdefault(key, asyncio.Event())

    def wake(self, key: tuple[str, str]) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    def see(self, key: tuple[str, str], body: Mapping[str, Any]) -> None:
        """The latest AlignmentJob as its watch delivered it (what the task reads), and a wake-up."""
        self._bodies[key] = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                             "metadata": dict(body.get("metadata") or {}), "spec": dict(body.get("spec") or {}),
                             "status": dict(body.get("status") or {})}
        self.wake(key)

    def body(self, key: tuple[str, str]) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def running(self, key: tuple[str, str]) -> bool:
        task = self._tasks.get(key)
        return task is not None and not task.done()

    def start(self, key: tuple[str, str], work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as this job's status task; a task still ending for a deleted object of that name is
        cancelled (the caller checked that no task of a live object is running)."""
        old = self._tasks.get(key)
        if old is not None and not old.done():
            old.cancel()
        self._gone.discard(key)
        self._events.pop(key, None)
        self._tasks[key] = asyncio.get_running_loop().create_task(work, name=f"status {key[0]}/{key[1]}")

    def gone(self, key: tuple[str, str]) -> None:
        """The AlignmentJob was deleted: its task (if any) ends at once."""
        self._bodies.pop(key, None)
        if key in self._events:
            self._gone.add(key)
            self._events[key].set()

    def is_gone(self, key: tuple[str, str]) -> bool:
        return key in self._gone

    def discard(self, key: tuple[str, str]) -> None:
        """The calling task of this job ends (a newer task of an object of the same name keeps its state)."""
        if self._tasks.get(key) is asyncio.current_task():
            self._tasks.pop(key, None)
            self._events.pop(key, None)
            self._gone.discard(key)

    async def close(self) -> None:
        """Cancel every status task (the operator is stopping)."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()


class SlimDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's last-handled-configuration, built without deep-copying what it throws away. A storage class is
    Kopf's documented seam for this (settings.persistence.diffbase_storage; `build` is the storages' public method
    that defines an object's essence): the essence is the same as Kopf's, only cheaper to make.

    Kopf's `build()` deep-copies the whole object on every event (managedFields and status included: most of a
    real server's object) and then deletes all of metadata but labels and annotations, and the status. That copy
    was the operator's largest CPU cost per AlignmentJob event. The same essence comes from the kept parts alone.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        if extra_fields:  # fields Kopf restores from the removed parts: let it see everything
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        kept = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        kept["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        return super().build(body=kopf.Body(kept))


def configure(settings: kopf.OperatorSettings, ours: Settings) -> None:
    """Kopf settings that make the operator safe on a real cluster and quick in the sandbox."""
    # Handler progress and the last handled spec live in annotations: status belongs to us alone,
    # and a CRD with a structural schema would prune unknown status fields anyway.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="align.dev")
    settings.persistence.diffbase_storage = SlimDiffBaseStorage(prefix="align.dev", key="last-handled-configuration")
    settings.persistence.finalizer = "align.dev/finalizer"
    # Only warnings of Kopf's own logs become Kubernetes Events; ours are posted explicitly.
    settings.posting.level = logging.WARNING
    # One worker per object while it has events; an idle worker leaves after idle_timeout. A limit would
    # make objects queue behind idle workers, so it is off unless set.
    settings.batching.worker_limit = ours.max_workers or None
    # Kopf's own API calls (watching, patching) retry transient errors with these pauses.
    settings.networking.error_backoffs = [0.5, 1, 2, 4, 8]
    settings.networking.request_timeout = 60.0
    # Only our Jobs and pods reach the operator (the handlers also filter, client-side): on a shared cluster
    # every other workload's pod events would otherwise be parsed, queued and dropped here.
    for group_or_version, plural in OWN_CHILDREN:
        settings.watching.label_selectors[group_or_version, plural] = CHILD_SELECTOR
    settings.watching.reconnect_backoff = 0.5
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660


def connection(memo: Any) -> kopf.ConnectionInfo:
    """Credentials: an explicit kubeconfig (sandbox), the in-cluster service account, or $KUBECONFIG."""
    path = memo.get("kubeconfig") if hasattr(memo, "get") else None
    if path:
        return connection_from_kubeconfig(path)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        info = kopf.login_with_service_account(logger=logging.getLogger("align.operator"))
        if info is not None:
            return info
    config = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    return connection_from_kubeconfig(config)


async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    ours: Settings = memo.get("settings") or Settings.from_env()
    memo.settings = ours
    configure(settings, ours)
    memo.client = Client(connection(memo), retries=ours.api_retries, connections=ours.api_connections)
    memo.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ours.scrape_timeout_seconds))
    memo.scrapes = asyncio.Semaphore(16)  # bounds concurrent scrapes across all jobs
    # Bounds creations in flight: in a burst, every new AlignmentJob's worker would otherwise hold its parsed
    # spec, rendered children and API answers at the same time, and RSS keeps that high-water mark.
    memo.creations = asyncio.Semaphore(ours.api_connections)
    memo.wakeups = Wakeups()
    memo.defaults = NamespaceDefaults(ours.namespace_defaults_seconds)
    metrics.serve(ours.metrics_port)
    if ours.webhook_port:
        settings.admission.server = admission.server(ours)
    logger.info(f"align-operator starting: trainer image {ours.trainer_image}, "
                f"namespaces {', '.join(ours.namespaces) or 'all'}")


#: Kopf's long-lived watch streams per served namespace (AlignmentJobs, Jobs, pods) and cluster-wide (CRDs,
#: namespaces): each holds one connection of the pool for as long as it runs.
WATCHES_PER_NAMESPACE = 3
CLUSTER_WATCHES = 2


def watch_streams(namespaces: tuple[str, ...]) -> int:
    return WATCHES_PER_NAMESPACE * max(1, len(namespaces)) + CLUSTER_WATCHES


def kopf_session(info: kopf.ConnectionInfo, settings: Settings) -> kopf.AiohttpSession:
    """Kopf's HTTP session with a bounded connection pool.

    Kopf's own session has no limit: a burst of 500 AlignmentJobs opened hundreds of TLS connections at once
    (each with a 256 KiB read buffer plus OpenSSL's), and the operator's RSS stayed at that high-water mark. With
    a bound, requests wait for a free connection instead; the watch streams get connections of their own on top.
    """
    limit = settings.api_connections + watch_streams(settings.namespaces)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(), auth=info.as_aiohttp_basic_auth())
    return kopf.AiohttpSession(server=info.server, default_namespace=info.default_namespace, aiohttp_session=session)


async def login(memo: kopf.Memo, **_: Any) -> kopf.AiohttpSession:
    return kopf_session(connection(memo), memo.get("settings") or Settings.from_env())


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    wakeups = memo.get("wakeups")
    if wakeups is not None:
        await wakeups.close()
    for name in ("client", "http"):
        resource = memo.get(name)
        if resource is not None:
            await resource.close()
