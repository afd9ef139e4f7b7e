"""Pause, resume and cancel: carry out the pure plan of status/lifecycle.py (one API call per step).

Called by the status daemon on every pass, so a step lost to an operator restart is taken on the next pass;
each step is idempotent (a patch to the same value, a delete of what is gone, a create that meets a 409).
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import kopf

from align_api import ManifestError
from align_api.constants import Reason

from .. import metrics
from ..kube import CONFIGMAPS, JOBS, ApiError, Client
from ..renderers import job_name
from ..settings import Settings
from ..status.lifecycle import Action, Plan, Want, observation, plan, verb, want
from ..status.observe import Observation, observe
from ..status.usage import DEFAULTS_CONFIGMAP, Budget, account, describe, exhausted, namespace_limits, to_warn
from .reconcile import create_children, invalid_message, parse, report_dropped


class NamespaceDefaults:
    """Each namespace's default budgets (the ConfigMap align-defaults, status/usage.py), read at most every
    settings.namespace_defaults_seconds per namespace (a GET, so an edit applies within that time). A value that is
    not a number is left out and named in a Warning event on the ConfigMap, once per version of it."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._read: dict[str, tuple[float, dict[str, float]]] = {}
        self._warned: dict[str, str] = {}

    async def get(self, client: Client, namespace: str, logger: kopf.Logger) -> dict[str, float]:
        cached = self._read.get(namespace)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        try:
            configmap = await client.get_or_none(CONFIGMAPS, DEFAULTS_CONFIGMAP, namespace)
        except ApiError as exc:  # keep what was read last (none at first) and try again next pass
            metrics.ERRORS.labels(f"api_{exc.status}").inc()
            logger.warning(f"cannot read ConfigMap {namespace}/{DEFAULTS_CONFIGMAP}: {exc}")
            return cached[1] if cached is not None else {}
        limits, problems = namespace_limits(configmap)
        version = str(((configmap or {}).get("metadata") or {}).get("resourceVersion"))
        if problems and configmap is not None and self._warned.get(namespace) != version:
            self._warned[namespace] = version
            message = f"ignored: {'; '.join(problems)}"[:1024]
            kopf.event(configmap, type="Warning", reason=Reason.INVALID_NAMESPACE_DEFAULTS, message=message)
            logger.warning(f"ConfigMap {namespace}/{DEFAULTS_CONFIGMAP}: {message}")
        self._read[namespace] = (time.monotonic(), limits)
        return limits


async def advance(client: Client, settings: Settings, body: kopf.Body, spec: Mapping[str, Any],
                  current: Mapping[str, Any], job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]],
                  now: str, logger: kopf.Logger, defaults: Mapping[str, float] | None = None
                  ) -> tuple[Observation, dict[str, Any]]:
    """One pass: account usage against the job's budgets and its namespace's `defaults` (status/usage.py), take
    the lifecycle's step, and say what to report."""
    budget = Budget.from_spec(spec, defaults)
    used = account(current.get("usage"), pods, now, budget)
    if to_warn(used):
        kopf.event(body, type="Warning", reason=Reason.BUDGET_WARNING,
                   message=f"80% of a budget used: {describe(used, budget)}; the job pauses at 100%"[:1024])
        used["warned"] = True
    wanted = want(spec, exhausted(used))
    queued = bool((spec.get("runPolicy") or {}).get("queueName")) and wanted == Want.RUN
    done = await step(client, settings, body, wanted, job, pods, queued=queued, logger=logger)
    observed = observe(job, pods, queued=queued) if job is not None else None
    return observation(wanted, done, observed, int(current.get("restarts") or 0), describe(used, budget)), used


async def step(client: Client, settings: Settings, body: kopf.Body, wanted: Want, job: Mapping[str, Any] | None,
               pods: Sequence[Mapping[str, Any]], *, queued: bool, logger: kopf.Logger) -> Plan:
    """Take the plan's step toward `wanted`; returns the plan (the caller reports from it)."""
    meta = body.get("metadata") or {}
    name, namespace = meta["name"], meta["namespace"]
    todo = plan(wanted, job, pods, queued=queued)
    why = f"Asked to {verb(wanted)}" if wanted != Want.BUDGET else "Budget used up"
    try:
        if todo.action == Action.SUSPEND_JOB:
            await client.patch(JOBS, job_name(name), {"spec": {"suspend": True}}, namespace)
            _event(body, Reason.SUSPENDING, f"{why}: suspending Job {job_name(name)}; the trainer "
                                            "checkpoints and its pods exit", logger)
        elif todo.action == Action.DELETE_JOB:
            # This server prunes Job.spec.suspend (Kubernetes < 1.21): stopping means deleting the Job.
            await client.delete(JOBS, job_name(name), namespace)
            _event(body, Reason.SUSPENDING, f"{why}: the server has no Job suspend, so Job "
                                            f"{job_name(name)} is deleted (re-created on resume); the trainer "
                                            "checkpoints and its pods exit", logger)
        elif todo.action == Action.UNSUSPEND_JOB:
            await client.patch(JOBS, job_name(name), {"spec": {"suspend": False}}, namespace)
            _event(body, Reason.RESUMED, f"Resumed: Job {job_name(name)} unsuspended; the trainer continues from "
                                         "its newest checkpoint", logger)
        elif todo.action == Action.CREATE_JOB:
            await _recreate(client, settings, body, logger)
    except ApiError as exc:
        metrics.ERRORS.labels(f"api_{exc.status}").inc()
        logger.warning(f"lifecycle step {todo.action} failed, will retry: {exc}")
    return todo


async def _recreate(client: Client, settings: Settings, body: kopf.Body, logger: kopf.Logger) -> None:
    meta = body.get("metadata") or {}
    try:
        parsed = parse(body)
    except ManifestError as exc:
        logger.warning(f"cannot re-create the Job, the spec is invalid: {invalid_message(exc)}")
        return
    resolved = dict((body.get("status") or {}).get("resolvedUris") or {})
    created, dropped = await create_children(client, body, parsed, meta["namespace"], settings, resolved)
    if created:
        _event(body, Reason.RESUMED, f"Resumed: Job {job_name(meta['name'])} created; the trainer continues "
                                     "from its newest checkpoint", logger)
        report_dropped(body, dropped, logger)


def _event(body: kopf.Body, reason: str, message: str, logger: kopf.Logger) -> None:
    kopf.event(body, type="Normal", reason=reason, message=message[:1024])
    logger.info(message)


__all__ = ["NamespaceDefaults", "advance", "step"]
