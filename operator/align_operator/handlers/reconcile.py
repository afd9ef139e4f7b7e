"""Creation (and resume after an operator restart): validate, wait for upstream jobs, create the children."""

from __future__ import annotations

import time
from typing import Any, Mapping

import kopf

from align_api import AlignmentJob, ManifestError, validate_document
from align_api.constants import API_VERSION, KIND, PLURAL, TERMINAL_PHASES, ConditionType, Phase, Reason
from align_api.status import now_rfc3339

from .. import metrics
from ..kube import CONFIGMAPS, JOBS, SERVICES, ApiError, Client, NotFound, Resource
from ..renderers import job_name, render_configmap, render_job, render_service
from ..settings import Settings
from ..status.conditions import get_condition, phase_conditions, set_condition
from ..status.lifecycle import Want, want
from ..status.usage import exhausted
from ..upstream import resolve, upstream_name

ALIGNMENT_JOBS = Resource(API_VERSION, PLURAL)
#: Seconds between attempts while the operator's RBAC denies a call (an admin has to act; no busy loop).
FORBIDDEN_RETRY_SECONDS = 30.0


def parse(body: Mapping[str, Any]) -> AlignmentJob:
    """The stored object as a validated AlignmentJob (status is ours, so it is not validated)."""
    doc = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
           "metadata": dict(body.get("metadata") or {}), "spec": body.get("spec")}
    return validate_document(doc, file=f"{KIND}/{body.get('metadata', {}).get('name')}")


def invalid_message(exc: ManifestError) -> str:
    return "; ".join(f"{e.path}: {e.message}" for e in exc.errors)[:1024]


def _terminal_status(status: Mapping[str, Any], phase: Phase, reason: str, message: str,
                     generation: int | None) -> dict[str, Any]:
    now = now_rfc3339()
    return {"phase": phase.value, "observedGeneration": generation,
            "conditions": phase_conditions(list(status.get("conditions") or []), phase, reason, message, generation, now),
            "lastError": {"reason": reason, "message": message, "time": now},
            **({"completionTime": now} if phase == Phase.FAILED else {})}


def with_operator_defaults(job: AlignmentJob, settings: Settings) -> AlignmentJob:
    """The job as the trainer gets it: the operator's default metrics port unless the spec sets one."""
    if "port" in job.spec.metrics.model_fields_set or settings.default_metrics_port == job.spec.metrics.port:
        return job
    metrics_spec = job.spec.metrics.model_copy(update={"port": settings.default_metrics_port})
    metrics_spec.model_fields_set.add("port")
    spec = job.spec.model_copy(update={"metrics": metrics_spec})
    return job.model_copy(update={"spec": spec})


#: Job fields the operator relies on that older API servers drop without a word (1.20 drops all four), with what
#: is lost; a Warning event names the ones the server dropped.
VERSIONED_JOB_FIELDS = {
    "completionMode": "Indexed completion (multi-node ranks; Kubernetes >= 1.24)",
    "podFailurePolicy": "failing fast on permanent trainer errors (Kubernetes >= 1.26); they are retried "
                        "up to backoffLimit instead",
    "suspend": "suspend and Kueue admission (Kubernetes >= 1.21); the Job runs at once",
    "ttlSecondsAfterFinished": "clean-up of finished Jobs (Kubernetes >= 1.23)",
}


def dropped_fields(sent: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """Job spec fields the API server did not keep (an older Kubernetes prunes fields it does not know)."""
    kept = stored.get("spec") or {}
    return [name for name in VERSIONED_JOB_FIELDS if name in (sent.get("spec") or {}) and name not in kept]


async def create_children(client: Client, body: Mapping[str, Any], job: AlignmentJob, namespace: str,
                          settings: Settings, resolved: Mapping[str, str], *,
                          with_job: bool = True) -> tuple[bool, list[str]]:
    """ConfigMap, Service and Job, owned by the AlignmentJob; 409 means a previous attempt made it. Returns whether
    the Job was created now, and the Job fields the server dropped. `with_job=False`: a job asked to stop
    (suspend, cancel) gets no Job yet; the status daemon creates it on resume (handlers/lifecycle.py)."""
    job = with_operator_defaults(job, settings)
    children = [(CONFIGMAPS, render_configmap(job, namespace)), (SERVICES, render_service(job, namespace))]
    if with_job:
        children.append((JOBS, render_job(job, namespace, settings, resolved)))
    created, dropped = False, []
    for resource, child in children:
        kopf.adopt(child, owner=dict(body))
        # kopf.adopt copies the owner's labels; the user's labels are not ours to spread onto children.
        child["metadata"]["labels"] = {**(body.get("metadata", {}).get("labels") or {}), **child["metadata"]["labels"]}
        stored, made = await client.create_or_get(resource, child, namespace)
        if made and resource is JOBS:
            created, dropped = True, dropped_fields(child, stored)
    return created, dropped


def creates_job(spec: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether the creation handler makes the trainer Job: only the first time, and only for a job asked to run.
    Once status.jobName is written, a missing Job was stopped (suspend, cancel, budget on a server without Job
    suspend) and is the lifecycle's to re-create on resume (handlers/lifecycle.py, a Resumed event). Without this,
    an operator restarted while a resume was pending re-created it here first, posting a second JobCreated."""
    return not status.get("jobName") and want(spec, exhausted(status.get("usage"))) == Want.RUN


async def reconcile(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, name: str, namespace: str,
                    meta: kopf.Meta, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """on.create and on.resume: bring a new (or not yet started) AlignmentJob to the point where its Job runs."""
    async with memo.creations:
        started = time.monotonic()
        try:
            await _reconcile(body, dict(status or {}), name, namespace, meta.get("generation"), patch, memo, logger)
        finally:
            metrics.RECONCILE_SECONDS.labels("create").observe(time.monotonic() - started)


async def _reconcile(body: kopf.Body, status: dict[str, Any], name: str, namespace: str, generation: int | None,
                     patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger) -> None:
    client: Client = memo.client
    settings: Settings = memo.settings
    if status.get("phase") in TERMINAL_PHASES:
        return
    try:
        job = parse(body)
    except ManifestError as exc:
        # A bad spec is final until the user edits it: report it, never raise (no retry loop).
        message = invalid_message(exc)
        patch.status.update(_terminal_status(status, Phase.FAILED, Reason.INVALID_SPEC, message, generation))
        kopf.event(body, type="Warning", reason=Reason.INVALID_SPEC, message=message)
        metrics.ERRORS.labels(Reason.INVALID_SPEC).inc()
        return

    resolved: dict[str, str] = dict(status.get("resolvedUris") or {})
    refs = job.spec.upstream_jobs()
    if refs and not status.get("jobName"):
        upstreams = {ref: await client.get_or_none(ALIGNMENT_JOBS, upstream_name(ref), namespace)
                     for ref in set(refs.values())}
        resolution = resolve(refs, upstreams)
        if resolution.failed:
            message = "; ".join(resolution.failed)[:1024]
            patch.status.update(_terminal_status(status, Phase.FAILED, Reason.UPSTREAM_FAILED, message, generation))
            kopf.event(body, type="Warning", reason=Reason.UPSTREAM_FAILED, message=message)
            return
        if resolution.waiting:
            message = f"waiting for upstream job(s) {', '.join(resolution.waiting)} to succeed"
            if status.get("phase") != Phase.WAITING:
                now = now_rfc3339()
                patch.status.update({
                    "phase": Phase.WAITING.value, "observedGeneration": generation,
                    "conditions": phase_conditions(list(status.get("conditions") or []), Phase.WAITING,
                                                   Reason.UPSTREAM_PENDING, message, generation, now)})
                kopf.event(body, type="Normal", reason=Reason.UPSTREAM_PENDING, message=message)
            raise kopf.TemporaryError(message, delay=settings.upstream_poll_seconds)
        resolved = resolution.resolved

    try:
        # A job created suspended (or suspended, then the operator restarted) gets its Job on resume, so that no
        # server that prunes Job.spec.suspend starts its pods.
        created, dropped = await create_children(client, body, job, namespace, settings, resolved,
                                                 with_job=creates_job(body.get("spec") or {}, status))
    except ApiError as exc:
        metrics.ERRORS.labels(f"api_{exc.status}").inc()
        if exc.status == 403:
            report_forbidden(body, status, exc, generation, patch)
            raise kopf.TemporaryError(f"creating children is forbidden: {exc.message}",
                                      delay=settings.forbidden_retry_seconds) from exc
        raise kopf.TemporaryError(f"creating children failed: {exc}", delay=2) from exc
    patch.status.update({"jobName": job_name(name), "observedGeneration": generation,
                         **({"resolvedUris": resolved} if resolved else {})})
    created_condition = get_condition(list(status.get("conditions") or []), ConditionType.CREATED)
    if created_condition is not None and created_condition.get("status") != "True":  # recovered (RBAC fixed)
        patch.status["conditions"] = set_condition(list(status.get("conditions") or []), ConditionType.CREATED, "True",
                                                   Reason.JOB_CREATED, f"Job {job_name(name)} created", generation)
        if (status.get("lastError") or {}).get("reason") == Reason.FORBIDDEN:
            patch.status["lastError"] = None
    if created:
        kopf.event(body, type="Normal", reason=Reason.JOB_CREATED, message=f"Created Job {job_name(name)}")
        logger.info(f"Created Job {job_name(name)}")
    report_dropped(body, dropped, logger)


def report_dropped(body: Mapping[str, Any], dropped: list[str], logger: Any) -> None:
    """A Warning event naming the Job fields an older API server pruned, and what is lost with them."""
    if dropped:
        message = (f"the API server dropped Job field(s) {', '.join(dropped)} (an older Kubernetes); lost: "
                   + "; ".join(VERSIONED_JOB_FIELDS[name] for name in dropped))[:1024]
        kopf.event(body, type="Warning", reason=Reason.JOB_FIELDS_DROPPED, message=message)
        logger.warning(message)


def report_forbidden(body: kopf.Body, status: Mapping[str, Any], exc: ApiError, generation: int | None,
                     patch: kopf.Patch) -> None:
    """The operator's ServiceAccount may not make a call it needs: say so where users look (a condition, lastError,
    a Warning event naming the verb and resource, from the API server's own message), then retry slowly."""
    message = f"the operator's RBAC denies a call it needs (an admin must grant it): {exc.message}"[:1024]
    now = now_rfc3339()
    patch.status.update({
        "phase": status.get("phase") or Phase.PENDING.value, "observedGeneration": generation,
        "conditions": set_condition(list(status.get("conditions") or []), ConditionType.CREATED, "False",
                                    Reason.FORBIDDEN, message, generation, now),
        "lastError": {"reason": Reason.FORBIDDEN.value, "message": message, "time": now}})
    kopf.event(body, type="Warning", reason=Reason.FORBIDDEN, message=message)


async def on_update(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, name: str, namespace: str,
                    meta: kopf.Meta, diff: kopf.Diff, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger,
                    **_: Any) -> None:
    """Spec edits: suspend/resume and the Job fields that may change while it runs; the rest waits for a new job."""
    started = time.monotonic()
    try:
        await _on_update(body, dict(status or {}), name, namespace, meta.get("generation"), diff, patch, memo, logger)
    finally:
        metrics.RECONCILE_SECONDS.labels("update").observe(time.monotonic() - started)


#: Paths under spec (Kopf's diff of the `spec` field is relative to it) a running Job can follow.
MUTABLE_PREFIXES = (("runPolicy",), ("promote",))


async def _on_update(body: kopf.Body, status: dict[str, Any], name: str, namespace: str, generation: int | None,
                     diff: kopf.Diff, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger) -> None:
    client: Client = memo.client
    if status.get("phase") in TERMINAL_PHASES and status.get("phase") != Phase.FAILED:
        return
    if status.get("phase") == Phase.FAILED and (status.get("lastError") or {}).get("reason") == Reason.INVALID_SPEC:
        # The user fixed an invalid spec: start over.
        patch.status.update({"phase": Phase.PENDING.value, "lastError": None, "completionTime": None,
                             "conditions": [], "observedGeneration": generation})
        await reconcile_fixed(body, name, namespace, generation, patch, memo, logger)
        return
    if not status.get("jobName"):
        return  # no Job yet: the creation handler renders the current spec
    try:
        job = parse(body)
    except ManifestError as exc:
        kopf.event(body, type="Warning", reason=Reason.INVALID_SPEC, message=invalid_message(exc))
        return
    run = job.spec.run_policy
    job_patch: dict[str, Any] = {"spec": {
        "activeDeadlineSeconds": run.active_deadline_seconds,
        "ttlSecondsAfterFinished": run.ttl_seconds_after_finished,
    }}
    try:  # suspend, resume and cancel: the status daemon's lifecycle step (handlers/lifecycle.py)
        await client.patch(JOBS, job_name(name), job_patch, namespace)
    except NotFound:
        pass  # stopped on a server without Job suspend: the re-created Job renders the current spec
    ignored = sorted("spec." + ".".join(str(p) for p in path) for _, path, _, _ in diff
                     if not any(tuple(path[:len(prefix)]) == prefix for prefix in MUTABLE_PREFIXES))
    if ignored:
        kopf.event(body, type="Warning", reason="SpecChangeNotApplied",
                   message=f"{', '.join(ignored)} changed after the Job was created; it applies to new jobs only")
    patch.status["observedGeneration"] = generation
    memo.wakeups.wake((namespace, name))


async def reconcile_fixed(body: kopf.Body, name: str, namespace: str, generation: int | None, patch: kopf.Patch,
                          memo: kopf.Memo, logger: kopf.Logger) -> None:
    await _reconcile(body, {}, name, namespace, generation, patch, memo, logger)


__all__ = ["creates_job", "on_update", "parse", "reconcile"]
