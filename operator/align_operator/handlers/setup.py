"""Operator startup: Kopf settings, credentials, the shared API client and the operator's metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
import kopf

from .. import metrics
from . import admission
from ..kube import Client, connection_from_kubeconfig
from ..settings import Settings


class Wakeups:
    """One asyncio.Event per AlignmentJob: Job and pod events wake that job's status daemon."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}

    def event(self, key: tuple[str, str]) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def wake(self, key: tuple[str, str]) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    def discard(self, key: tuple[str, str]) -> None:
        self._events.pop(key, None)


def configure(settings: kopf.OperatorSettings, ours: Settings) -> None:
    """Kopf settings that make the operator safe on a real cluster and quick in the sandbox."""
    # Handler progress and the last handled spec live in annotations: status belongs to us alone,
    # and a CRD with a structural schema would prune unknown status fields anyway.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="align.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="align.dev", key="last-handled-configuration")
    settings.persistence.finalizer = "align.dev/finalizer"
    # Only warnings of Kopf's own logs become Kubernetes Events; ours are posted explicitly.
    settings.posting.level = logging.WARNING
    # One worker per object while it has events; an idle worker leaves after idle_timeout. A limit would
    # make objects queue behind idle workers, so it is off unless set.
    settings.batching.worker_limit = ours.max_workers or None
    # Kopf's own API calls (watching, patching) retry transient errors with these pauses.
    settings.networking.error_backoffs = [0.5, 1, 2, 4, 8]
    settings.networking.request_timeout = 60.0
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
    memo.client = Client(connection(memo), retries=ours.api_retries)
    memo.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ours.scrape_timeout_seconds))
    memo.scrapes = asyncio.Semaphore(16)  # bounds concurrent scrapes across all jobs
    memo.wakeups = Wakeups()
    metrics.serve(ours.metrics_port)
    if ours.webhook_port:
        settings.admission.server = admission.server(ours)
    logger.info(f"align-operator starting: trainer image {ours.trainer_image}, "
                f"namespaces {', '.join(ours.namespaces) or 'all'}")


async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    return connection(memo)


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("client", "http"):
        resource = memo.get(name)
        if resource is not None:
            await resource.close()
