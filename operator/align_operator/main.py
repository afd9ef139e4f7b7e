"""Every reaction of the operator, in one screen (`kopf run -m align_operator.main`, or `alignctl operator`)."""

from __future__ import annotations

from typing import Any

import kopf

from align_api.constants import GROUP, PLURAL, TERMINAL_PHASES, VERSION

from .handlers import admission, reconcile, setup, track
from .renderers.names import JOB_LABEL, MANAGED_BY
from .runner import quiet_routine_logs
from .settings import Settings

ALIGNMENT_JOBS = (GROUP, VERSION, PLURAL)
#: Jobs and pods the operator made (selected client-side by Kopf).
OURS = {"labels": {JOB_LABEL: kopf.PRESENT, **MANAGED_BY}}


def _live(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL_PHASES


quiet_routine_logs()  # also under plain `kopf run`, as the chart runs it

# Operator lifecycle: settings, credentials, API client, metrics endpoint.
kopf.on.startup()(setup.startup)
kopf.on.login()(setup.login)
kopf.on.cleanup()(setup.cleanup)

# AlignmentJob: validate, wait for upstream jobs, create ConfigMap + Service + Job (also after a restart).
kopf.on.create(*ALIGNMENT_JOBS, id="create")(reconcile.reconcile)
kopf.on.resume(*ALIGNMENT_JOBS, id="resume", when=_live)(reconcile.reconcile)
kopf.on.update(*ALIGNMENT_JOBS, id="update", field="spec")(reconcile.on_update)
# Admission: the same validation at `kubectl apply` time. Registered only with a webhook port, because Kopf
# refuses to start with admission handlers and no server (setup.startup configures it from the same setting).
if Settings.from_env().webhook_port:
    kopf.on.validate(*ALIGNMENT_JOBS, id=admission.WEBHOOK_ID, operations=["CREATE", "UPDATE"])(admission.validate)
# Deletion needs no handler: the children are owned by the AlignmentJob and garbage-collected with it.

# Status: one task of the operator's own per live AlignmentJob, started and ended by the AlignmentJob's events
# (no Kopf daemon, so no finalizer: deleting never waits for the operator); Job/pod events wake it, indexes hold
# what it reads.
kopf.on.event(*ALIGNMENT_JOBS, id="track")(track.follow)
kopf.index("batch", "v1", "jobs", id="index_jobs", **OURS)(track.index_jobs)
kopf.index("v1", "pods", id="index_pods", **OURS)(track.index_pods)
kopf.on.event("batch", "v1", "jobs", id="wake_on_job", **OURS)(track.wake)
kopf.on.event("v1", "pods", id="wake_on_pod", **OURS)(track.wake)

# Operator metrics: jobs by phase, for every AlignmentJob seen (finished ones too, after a restart).
kopf.on.event(*ALIGNMENT_JOBS, id="phase_metric")(track.phase_metric)
