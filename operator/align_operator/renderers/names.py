"""Deterministic names and labels of an AlignmentJob's children: a restarted operator finds, never duplicates."""

from __future__ import annotations

import hashlib

from align_api import AlignmentJob

#: Label on every child (and trainer pod) naming its AlignmentJob; the operator's watches select on it.
JOB_LABEL = "align.dev/job"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = {"app.kubernetes.io/managed-by": "align-operator"}
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: Job names leave room for the "-<index>" pod hostname suffix inside a 63-character DNS label.
MAX_JOB_NAME = 56


def _bounded(base: str, suffix: str, limit: int) -> str:
    """`base + suffix`, shortened with a stable hash when it would exceed `limit` characters."""
    name = f"{base}{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return f"{base[: limit - len(suffix) - 7].rstrip('-')}-{digest}{suffix}"


def job_name(name: str) -> str:
    """The batch/v1 Job of an AlignmentJob: `<name>-trainer`."""
    return _bounded(name, "-trainer", MAX_JOB_NAME)


def service_name(name: str) -> str:
    """The headless Service giving trainer pods stable DNS names (`<job>-<index>.<service>`)."""
    return _bounded(name, "-trainer", 63)


def config_name(name: str) -> str:
    """The ConfigMap holding the resolved manifest the trainer reads: `<name>-config`."""
    return _bounded(name, "-config", 253)


def child_labels(job: AlignmentJob, component: str = "trainer") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "align-trainer",
        "app.kubernetes.io/instance": job.name,
        COMPONENT_LABEL: component,
        **MANAGED_BY,
        JOB_LABEL: job.name,
        "align.dev/algorithm": job.spec.algorithm.value,
    }
