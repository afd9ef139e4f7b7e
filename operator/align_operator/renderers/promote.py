"""The promote Job (pure): one pod of the trainer image running `python -m align_trainer.promote` on the job's
checkpoint volume, with the trainer's config, env, volumes, resources and security context (status/promotion.py
says when the operator makes it)."""

from __future__ import annotations

from typing import Any, Mapping

from align_api import AlignmentJob
from align_api.constants import CONFIG_FILE_NAME, CONFIG_MOUNT_PATH

from ..settings import Settings
from .job import CONTAINER, ENV_TORCH_SHUTDOWN_TIMEOUT, output_dir, render_job
from .names import _bounded, child_labels

#: app.kubernetes.io/component of the promote Job and its pod (the trainer's is "trainer").
PROMOTE_COMPONENT = "promote"


def promote_job_name(name: str, step: int, generation: int | None) -> str:
    """`<name>-promote-<step>-<generation>`: found again after an operator restart; a new generation (a spec edit)
    gets a Job of its own."""
    return _bounded(name, f"-promote-{step}-{generation or 0}", 63)


def promote_args(job: AlignmentJob, step: int) -> list[str]:
    args = ["-m", "align_trainer.promote", "--config", f"{CONFIG_MOUNT_PATH}/{CONFIG_FILE_NAME}", "--step", str(step)]
    out = output_dir(job)
    return args + (["--output", out] if out else [])


def render_promote_job(job: AlignmentJob, namespace: str, settings: Settings, step: int, generation: int | None,
                       resolved_uris: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The batch/v1 Job publishing checkpoint `step` (owner references are added by the handler). No retries
    (backoffLimit 0): a missing step or a failed gate is final, and the Promoted condition says why."""
    rendered = render_job(job, namespace, settings, resolved_uris)
    labels = child_labels(job, component=PROMOTE_COMPONENT)
    spec = rendered["spec"]
    for key in ("completionMode", "suspend", "activeDeadlineSeconds", "podFailurePolicy"):
        spec.pop(key, None)
    spec.update(completions=1, parallelism=1, backoffLimit=0)
    template = spec["template"]
    template["metadata"] = {"labels": labels, "annotations": {"kubectl.kubernetes.io/default-container": CONTAINER}}
    pod = template["spec"]
    pod.pop("subdomain", None)
    container = pod["containers"][0]
    container["command"], container["args"] = ["python"], promote_args(job, step)
    container.pop("ports", None)
    container["env"] = [e for e in container["env"] if e["name"] not in ("NODE_RANK", ENV_TORCH_SHUTDOWN_TIMEOUT)]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": promote_job_name(job.name, step, generation), "namespace": namespace,
                         "labels": labels},
            "spec": spec}


__all__ = ["PROMOTE_COMPONENT", "promote_args", "promote_job_name", "render_promote_job"]
