"""spec.promote: carry out the pure plan of status/promotion.py (one API call at most per pass: creating the promote
Job; the rest is read from the Job and its pod). Called by the status task, which keeps running for an ended job
while a promotion is pending, so a step lost to an operator restart is taken on the next pass."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import kopf

from align_api import ManifestError
from align_api.constants import Reason

from .. import metrics
from ..kube import JOBS, ApiError, Client
from ..renderers.promote import promote_job_name, render_promote_job
from ..settings import Settings
from ..status.promotion import Action, Plan, apply, asked, plan
from .reconcile import invalid_message, parse, with_operator_defaults


async def advance(client: Client, settings: Settings, body: kopf.Body, current: Mapping[str, Any],
                  jobs: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]], now: str,
                  logger: kopf.Logger) -> dict[str, Any]:
    """One pass: the status after the promotion's next step (`jobs`, `pods`: the job's promote Jobs and pods)."""
    meta = body.get("metadata") or {}
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation")
    step = asked(body.get("spec") or {})
    if step is None:
        return dict(current)
    wanted = promote_job_name(name, step, generation)
    job = next((j for j in jobs if (j.get("metadata") or {}).get("name") == wanted), None)
    own = [p for p in pods if str((p.get("metadata") or {}).get("name") or "").startswith(f"{wanted}-")]
    todo = plan(step, current, job, own, now)
    if todo.action == Action.CREATE_JOB:
        todo = await _create(client, settings, body, current, step, generation, logger) or todo
    return apply(current, todo, generation, now)


async def _create(client: Client, settings: Settings, body: kopf.Body, current: Mapping[str, Any], step: int,
                  generation: int | None, logger: kopf.Logger) -> Plan | None:
    """Create the promote Job (a 409 means a previous pass made it); a Plan only when that cannot work."""
    meta = body.get("metadata") or {}
    try:
        parsed = with_operator_defaults(parse(body), settings)
    except ManifestError as exc:
        return Plan(Action.NONE, ("False", Reason.PROMOTION_FAILED, f"step {step}: {invalid_message(exc)}"))
    child = render_promote_job(parsed, meta["namespace"], settings, step, generation,
                               dict(current.get("resolvedUris") or {}))
    kopf.adopt(child, owner=dict(body))
    child["metadata"]["labels"] = {**(meta.get("labels") or {}), **child["metadata"]["labels"]}
    try:
        _, made = await client.create_or_get(JOBS, child, meta["namespace"])
    except ApiError as exc:
        metrics.ERRORS.labels(f"api_{exc.status}").inc()
        logger.warning(f"creating promote Job {child['metadata']['name']} failed, will retry: {exc}")
        return None
    if made:
        logger.info(f"Created promote Job {child['metadata']['name']} (checkpoint {step})")
    return None


__all__ = ["advance"]
