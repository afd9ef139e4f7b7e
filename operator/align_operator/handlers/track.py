"""Status from the Job and its pods, and progress from the trainer's /metrics: one status task per live job.

The task is the operator's own (setup.Wakeups: started and ended by the AlignmentJob's watch events, no Kopf
daemon and so no finalizer). Job and pod watch events only wake it (Kopf indexes hold the latest Job and pods);
it is the single writer of phase and conditions once the Job exists, so concurrent events never race each other.
Scrapes are bounded per job (settings.scrape_interval_seconds) and across jobs (a semaphore).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any, Mapping

import aiohttp
import kopf

from align_api.constants import TERMINAL_PHASES, ConditionType, Phase, Reason
from align_api.status import now_rfc3339

from .. import metrics
from ..kube import ApiError, Client, NotFound
from ..renderers.names import COMPONENT_LABEL, JOB_LABEL
from ..renderers.promote import PROMOTE_COMPONENT
from ..settings import Settings
from ..status import exposition, promotion
from ..status.compute import next_status
from ..status.conditions import get_condition, set_condition
from ..status.checkpoints import listed, parse_index, uri
from ..status.milestones import milestones
from ..status.progress import key_metrics, parse_metrics, progress
from ..status.warnings import new_warnings, parse_warnings, warning_conditions
from . import lifecycle
from . import promotion as promoting
from .reconcile import ALIGNMENT_JOBS

WARNING_PHASES = {Phase.FAILED}


# ---------------------------------------------------------------------------------------------- indexes
# These run on every Job, pod and AlignmentJob event. They are coroutines because Kopf runs a plain function in
# its thread pool: one thread hop per event and handler, and one malloc arena per pool thread.
def _summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a Job or Pod the status logic reads (indexes stay small)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {"metadata": {"name": meta.get("name"), "annotations": dict(meta.get("annotations") or {}),
                         "uid": meta.get("uid"), "deletionTimestamp": meta.get("deletionTimestamp")},
            # whether the key is there at all tells a server without Job suspend (status/lifecycle.py); a pod's
            # containers' resources say how many GPUs its running time costs (status/usage.py)
            "spec": {**({"suspend": spec["suspend"]} if "suspend" in spec else {}),
                     **({"containers": [{"resources": c.get("resources") or {}} for c in spec["containers"]]}
                        if "containers" in spec else {})},
            "status": dict(body.get("status") or {})}


def _key(namespace: str, labels: Mapping[str, str]) -> tuple[str, ...]:
    """(namespace, job) for the trainer's Job and pods; (namespace, job, "promote") for the promote Jobs' (never
    mistaken for the trainer's: the lifecycle and usage read only the former)."""
    if labels.get(COMPONENT_LABEL) == PROMOTE_COMPONENT:
        return namespace, labels[JOB_LABEL], PROMOTE_COMPONENT
    return namespace, labels[JOB_LABEL]


async def index_jobs(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {_key(namespace, labels): _summary(body)}


async def index_pods(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {_key(namespace, labels): _summary(body)}


async def wake(namespace: str, labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
    """A Job or pod of an AlignmentJob changed: let its daemon look now."""
    wakeups = memo.get("wakeups")
    if wakeups is not None:
        wakeups.wake((namespace, labels[JOB_LABEL]))


async def follow(type: str | None, body: kopf.Body, name: str, namespace: str, memo: kopf.Memo,
                 logger: kopf.Logger, index_jobs: kopf.Index, index_pods: kopf.Index, **_: Any) -> None:
    """Every AlignmentJob watch event: the latest body for the job's status task, which starts for a live job (at
    creation, and for every live job when the operator starts: Kopf lists them first) and ends on deletion."""
    wakeups = memo.get("wakeups")
    if wakeups is None:
        return
    key = (namespace, name)
    if type == "DELETED":
        wakeups.gone(key)
        return
    wakeups.see(key, body)
    status = body.get("status") or {}
    ended = status.get("phase") in TERMINAL_PHASES and not promotion.pending(
        body.get("spec") or {}, status, (body.get("metadata") or {}).get("generation"))
    if ended or (wakeups.running(key) and not wakeups.is_gone(key)):
        return
    wakeups.start(key, supervise(key, memo, logger, index_jobs, index_pods))


async def supervise(key: tuple[str, str], memo: kopf.Memo, logger: kopf.Logger, index_jobs: kopf.Index,
                    index_pods: kopf.Index) -> None:
    """The job's status task: `track`, restarted with a backoff if it fails (as Kopf restarts a daemon)."""
    backoff = 1.0
    while not memo.wakeups.is_gone(key) and memo.wakeups.body(key) is not None:
        try:
            await track(key, memo, logger, index_jobs, index_pods)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (one job's bug must not end its tracking for good)
            metrics.ERRORS.labels("status_task").inc()
            logger.error(f"status task failed, restarting in {backoff:.0f}s: {exc!r}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 60.0)


async def phase_metric(type: str | None, status: kopf.Status, name: str, namespace: str, **_: Any) -> None:
    """Keep align_operator_jobs{phase} and the per-job usage series true for every AlignmentJob seen, finished
    ones included."""
    metrics.record_phase(namespace, name, None if type == "DELETED" else status.get("phase") or Phase.PENDING.value)
    metrics.record_usage(namespace, name, None if type == "DELETED" else status.get("usage"))


# ---------------------------------------------------------------------------------------------- scraping
async def scrape(memo: kopf.Memo, endpoint: tuple[str, int, str]
                 ) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, str]] | None:
    """The trainer's gauges by name, its kept checkpoints (status/checkpoints.py) and its warnings
    {reason: message} (status/warnings.py)."""
    ip, port, path = endpoint
    async with memo.scrapes:
        try:
            async with memo.http.get(f"http://{ip}:{port}{path}") as response:
                if response.status != 200:
                    metrics.SCRAPES.labels("http_error").inc()
                    return None
                text = await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            metrics.SCRAPES.labels("unreachable").inc()
            return None
    try:
        families = exposition.parse(text)
        values, index, warnings = parse_metrics(families), parse_index(families), parse_warnings(families)
    except ValueError:
        metrics.SCRAPES.labels("unparseable").inc()
        return None
    metrics.SCRAPES.labels("ok").inc()
    return values, index, warnings


def fallback_artifacts(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Where the adapter is when the trainer's termination message does not say: the durable output location."""
    output = (spec.get("output") or {}).get("uri")
    if output:
        return {"adapter": output}
    volume = (spec.get("checkpoints") or {}).get("volume")
    if volume:
        return {"adapter": f"pvc://{volume}/{name}/final", "checkpoints": [f"pvc://{volume}/{name}/checkpoints"]}
    return {}


def created(status: dict[str, Any], job: str, generation: int | None, now: str) -> dict[str, Any]:
    """`status` of a job whose Job `job` exists: Created is True (the Job is made last, after its ConfigMap and
    Service) and a Forbidden lastError is over. Also after a Created=False (Forbidden) that the creation handler's
    retry set True while this pass held the older status: its conditions list would otherwise be written back over
    the handler's (a denied-then-granted job ended Succeeded with Created=False on the real plane)."""
    cond = get_condition(status.get("conditions") or [], ConditionType.CREATED)
    if cond is not None and cond.get("status") == "True":
        return status
    out = dict(status)
    if (out.get("lastError") or {}).get("reason") == Reason.FORBIDDEN:
        out.pop("lastError")
    out["conditions"] = set_condition(out.get("conditions") or [], ConditionType.CREATED, "True",
                                      Reason.JOB_CREATED, f"Job {job} created", generation, now)
    return out


def _elapsed(status: Mapping[str, Any]) -> float | None:
    start = status.get("startTime")
    if not start:
        return None
    return (datetime.now(timezone.utc) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning `before` into `after` at the top level of status."""
    patch = {k: v for k, v in after.items() if before.get(k) != v}
    patch.update({k: None for k in before if k not in after})
    return patch


# ---------------------------------------------------------------------------------------------- the task
async def track(key: tuple[str, str], memo: kopf.Memo, logger: kopf.Logger, index_jobs: kopf.Index,
                index_pods: kopf.Index) -> None:
    """Until the job ends or is deleted: observe its Job and pods, scrape the trainer, write status."""
    client: Client = memo.client
    settings: Settings = memo.settings
    namespace, name = key
    wakeup = memo.wakeups.event(key)
    state: dict[str, Any] = {}      # the status as of our last write (the live body may lag behind it)
    state_version = -1
    last_scrape = 0.0
    scraped: dict[str, float] | None = None
    try:
        while not memo.wakeups.is_gone(key) and (body := memo.wakeups.body(key)) is not None:
            spec, meta = body["spec"], body["metadata"]
            live = dict(body.get("status") or {})
            current = live if _version(meta) >= state_version else {**live, **state}
            jobs = list(index_jobs.get(key, []))
            # jobName: the creation handler is done; from then on a missing Job is the lifecycle's to create
            if (jobs or current.get("jobName")) and current.get("phase") not in TERMINAL_PHASES:
                started = time.monotonic()
                job, pods = (jobs[0] if jobs else None), list(index_pods.get(key, []))
                now = now_rfc3339()
                # usage, budget, and the step toward what the spec asks (run, suspend, cancel)
                defaults = await memo.defaults.get(client, namespace, logger) if memo.get("defaults") else None
                obs, usage = await lifecycle.advance(client, settings, body, spec, current, job, pods, now, logger,
                                                     defaults)
                new = next_status(current, obs, generation=meta.get("generation"), now=now,
                                  fallback_artifacts=fallback_artifacts(spec, name),
                                  checkpoint_uri=lambda step: uri(spec, name, step))
                new["usage"] = usage
                step = promotion.asked(spec)
                if step is not None and promotion.pending(spec, new, meta.get("generation")):  # promoted once ended
                    new = promotion.apply(new, promotion.plan(step, new, None, [], now), meta.get("generation"), now)
                if job is not None:
                    new = created(new, job["metadata"]["name"], meta.get("generation"), now)
                if obs.phase == Phase.RUNNING and obs.metrics_endpoint and \
                        time.monotonic() - last_scrape >= settings.scrape_interval_seconds:
                    last_scrape = time.monotonic()
                    got = await scrape(memo, obs.metrics_endpoint)
                    if got is not None:
                        scraped = got[0]
                        if got[1]:  # the kept checkpoints, as the trainer lists them
                            new["checkpoints"] = listed(got[1], spec, name)
                        new["conditions"] = warning_conditions(new.get("conditions") or [], got[2],
                                                               meta.get("generation"), now)
                    if scraped:
                        new_progress = progress(scraped, _elapsed(new), now)
                        if new_progress is not None:
                            new["progress"] = new_progress
                        new["metrics"] = key_metrics(scraped)
                # The creation handler owns these keys; never remove them from here.
                patch = {k: v for k, v in _diff(current, new).items()
                         if v is not None or k not in ("jobName", "resolvedUris", "observedGeneration")}
                if patch:
                    try:
                        written = await _write(client, body, name, namespace, patch, current, new, logger)
                    except NotFound:
                        return  # deleted: nothing left to report on
                    if written is not None:
                        state, state_version = written
                        current = state
                metrics.RECONCILE_SECONDS.labels("status").observe(time.monotonic() - started)
            if current.get("phase") in TERMINAL_PHASES:
                generation = meta.get("generation")
                if promotion.pending(spec, current, generation):  # spec.promote, once training has ended
                    try:
                        written = await _promote(client, settings, body, current, index_jobs, index_pods, logger)
                    except NotFound:
                        return
                    if written is not None:
                        state, state_version = written
                        current = state
                if not promotion.pending(spec, current, generation):
                    return
            interval = settings.scrape_interval_seconds if current.get("phase") == Phase.RUNNING \
                else settings.status_interval_seconds
            try:
                await asyncio.wait_for(wakeup.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            wakeup.clear()
    finally:
        memo.wakeups.discard(key)


async def _promote(client: Client, settings: Settings, body: kopf.Body, current: dict[str, Any],
                   index_jobs: kopf.Index, index_pods: kopf.Index,
                   logger: kopf.Logger) -> tuple[dict[str, Any], int] | None:
    """One pass of spec.promote for an ended job (handlers/promotion.py); what _write returns, None if nothing
    changed. Its promote Jobs and pods are indexed apart from the trainer's (`_key`)."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"], PROMOTE_COMPONENT)
    new = await promoting.advance(client, settings, body, current, list(index_jobs.get(key, [])),
                                  list(index_pods.get(key, [])), now_rfc3339(), logger)
    patch = _diff(current, new)
    return await _write(client, body, meta["name"], meta["namespace"], patch, current, new, logger) if patch else None


def _version(meta: Mapping[str, Any]) -> int:
    raw = str(meta.get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else -1


async def _write(client: Client, body: kopf.Body, name: str, namespace: str, patch: dict[str, Any],
                 current: dict[str, Any], new: dict[str, Any], logger: kopf.Logger) -> tuple[dict[str, Any], int] | None:
    """Patch status; (stored status, its resourceVersion), or None if the write failed (retried next pass)."""
    try:
        stored = await client.patch(ALIGNMENT_JOBS, name, {"status": patch}, namespace, subresource="status")
    except NotFound:
        raise
    except ApiError as exc:
        metrics.ERRORS.labels(f"api_{exc.status}").inc()
        logger.warning(f"status update failed, will retry: {exc}")
        return None
    previous = current.get("phase")
    phase = new.get("phase")
    for kind, reason, message in milestones(current, new):  # the trainer's story: progress, evaluation
        kopf.event(body, type=kind, reason=reason, message=message[:1024])
    if phase != previous and phase is not None:
        reason, message = _phase_reason(new, previous)
        if reason != Reason.JOB_CREATED:  # posted once, by the creation handler, when it makes the Job
            kopf.event(body, type="Warning" if phase in WARNING_PHASES else "Normal", reason=reason,
                       message=f"{previous or 'New'} -> {phase}: {message}"[:1024])
        logger.info(f"phase {previous} -> {phase} ({reason})")
    for cond in new_warnings(current.get("conditions") or [], new.get("conditions") or []):
        kopf.event(body, type="Warning", reason=cond.get("reason", "Warning"), message=str(cond.get("message"))[:1024])
    error = new.get("lastError")
    if error and error != current.get("lastError") and phase not in WARNING_PHASES and \
            not (phase != previous and _phase_reason(new, previous)[0] == error.get("reason")):
        # the record that outlives lastError (cleared once the job moves on): one Warning per new error
        kopf.event(body, type="Warning", reason=error.get("reason", "Error"), message=str(error.get("message"))[:1024])
    return dict(stored.get("status") or new), _version(stored.get("metadata") or {})


def _phase_reason(status: Mapping[str, Any], previous: str | None = None) -> tuple[str, str]:
    """The reason and message of the condition that explains the phase (Pending has none of its own: after
    Suspended it is a resume, else the Created condition's, whose JobCreated event the creation handler posted)."""
    phase = status.get("phase")
    conditions = status.get("conditions") or []
    for cond in conditions:
        if cond.get("type") == phase and cond.get("status") == "True":
            return cond.get("reason", phase), cond.get("message", "")
    error = status.get("lastError") or {}
    if phase == Phase.PENDING and error:
        return error.get("reason", phase), error.get("message", "")
    if phase == Phase.PENDING and previous == Phase.SUSPENDED:
        return Reason.RESUMED, "waiting for the trainer pods, which continue from the newest checkpoint"
    created = get_condition(conditions, ConditionType.CREATED) or {}
    return created.get("reason", str(phase)), created.get("message", "")
