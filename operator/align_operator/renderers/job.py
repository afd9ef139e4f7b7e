"""The trainer Job: batch/v1, Indexed, one pod per node, failing fast on the trainer's permanent exit codes."""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

from align_api import AlignmentJob
from align_api.constants import (CONFIG_FILE_NAME, CONFIG_MOUNT_PATH, ENV_AWS_ACCESS_KEY_ID,
                                 ENV_AWS_SECRET_ACCESS_KEY, ENV_HF_TOKEN, ENV_JUDGE_API_KEY, ENV_S3_ENDPOINT_URL,
                                 ExitCode)

from ..settings import Settings
from .hub import hub_env
from .names import KUEUE_QUEUE_LABEL, child_labels, config_name, job_name, service_name
from .service import RENDEZVOUS_PORT

CONTAINER = "trainer"
WORK_DIR = "/workspace"
PVC_ROOT = "/mnt/pvc"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
#: The trainer reads these (align_trainer.storage / builtin).
ENV_PVC_ROOT = "ALIGN_PVC_ROOT"
ENV_RESOLVED_URIS = "ALIGN_RESOLVED_URIS"
ENV_CACHE_DIR = "ALIGN_CACHE_DIR"
ENV_OUTPUT_DIR = "ALIGN_OUTPUT_DIR"
ENV_JOB_UID = "ALIGN_JOB_UID"
GPU = "nvidia.com/gpu"
ENV_TORCH_SHUTDOWN_TIMEOUT = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"


def uses_torchrun(job: AlignmentJob) -> bool:
    """Several ranks in total (nodes, GPUs or CPU processes per pod) start through torchrun."""
    return job.spec.resources.world_size > 1


def pvc_claims(job: AlignmentJob, resolved_uris: Mapping[str, str] | None = None) -> list[str]:
    """Every PersistentVolumeClaim the job reads or writes: pvc:// URIs in the spec and in the resolved job://
    references (an upstream job's adapter on a claim), and the checkpoint volume, in order."""
    claims: dict[str, None] = {}

    def walk(value: Any) -> Iterator[str]:
        if isinstance(value, str) and value.startswith("pvc://"):
            yield value[len("pvc://"):].split("/", 1)[0]
        elif isinstance(value, Mapping):
            for item in value.values():
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)

    for claim in walk([job.to_dict()["spec"], dict(resolved_uris or {})]):
        claims[claim] = None
    if job.spec.checkpoints.volume:
        claims[job.spec.checkpoints.volume] = None
    return list(claims)


def work_dir(job: AlignmentJob) -> str:
    """The trainer's local working directory in the pod (checkpoints, metrics, final/ before upload): on the
    checkpoint volume when there is one, else on the `work` emptyDir; never the image's current directory."""
    if job.spec.checkpoints.volume:
        return f"{PVC_ROOT}/{job.spec.checkpoints.volume}/{job.name}"
    return f"{WORK_DIR}/output"


def output_dir(job: AlignmentJob) -> str | None:
    """The `--output` directory inside the pod; None when spec.output.uri says where the trainer uploads."""
    return None if job.spec.output.uri else work_dir(job)


def command(job: AlignmentJob) -> tuple[list[str], list[str]]:
    """(command, args) of the trainer container: torchrun for several ranks, python otherwise.

    torchrun runs through `python -m align_trainer.launch`, which is torchrun itself (same arguments) except
    that the pod exits with the failing rank's own exit code: plain torchrun exits 1 for every worker failure,
    which would turn a permanent error (bad data: 11) into a retry instead of the podFailurePolicy's FailJob.
    """
    args = ["-m", "align_trainer", "--config", f"{CONFIG_MOUNT_PATH}/{CONFIG_FILE_NAME}"]
    out = output_dir(job)
    if out:
        args += ["--output", out]
    res = job.spec.resources
    if not uses_torchrun(job):
        return ["python"], args
    launcher = [f"--nproc-per-node={res.ranks_per_node}", "--max-restarts=0"]  # retries are the Job's
    if res.nodes == 1:
        launcher += ["--standalone"]
    else:
        launcher += [f"--nnodes={res.nodes}", "--node-rank=$(NODE_RANK)",
                     f"--master-addr={job_name(job.name)}-0.{service_name(job.name)}",
                     f"--master-port={RENDEZVOUS_PORT}"]
    return ["python"], ["-m", "align_trainer.launch", *launcher, *args]  # torchrun's own -m: a module per rank


def cpu_threads_per_rank(job: AlignmentJob) -> int | None:
    """OMP_NUM_THREADS for CPU ranks: the pod's CPU limit shared out over its ranks (torchrun would set 1;
    one process alone is left to PyTorch's default). None when there is nothing to share."""
    res = job.spec.resources
    if res.gpus_per_node or res.ranks_per_node == 1 or not res.cpu:
        return None
    cpu = res.cpu
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(cores // res.ranks_per_node))


def _secret_env(name: str, ref: Any) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def env(job: AlignmentJob, resolved_uris: Mapping[str, str] | None) -> list[dict[str, Any]]:
    """Container env: plain settings, Secret references (never values), the resolved job:// table."""
    items: list[dict[str, Any]] = [
        {"name": "ALIGN_JOB_NAME", "value": job.name},
        # With spec.output.uri there is no --output: the working directory still belongs on the job's volume.
        {"name": ENV_OUTPUT_DIR, "value": work_dir(job)},
        {"name": "ALIGN_JOB_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}},
        {"name": ENV_PVC_ROOT, "value": PVC_ROOT},
        {"name": ENV_CACHE_DIR, "value": f"{WORK_DIR}/cache"},
        {"name": "HF_HOME", "value": f"{WORK_DIR}/cache/huggingface"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    uid = (job.metadata.model_extra or {}).get("uid")
    if uid:  # the trainer resumes only checkpoints of this very object (align_trainer.identity)
        items.append({"name": ENV_JOB_UID, "value": str(uid)})
    threads = cpu_threads_per_rank(job)
    if threads is not None:
        items.append({"name": "OMP_NUM_THREADS", "value": str(threads)})
    secrets = job.spec.secrets
    if secrets is not None:
        if secrets.hugging_face_token:
            items.append(_secret_env(ENV_HF_TOKEN, secrets.hugging_face_token))
        creds = secrets.storage_credentials
        if creds is not None:
            items.append(_secret_env(ENV_AWS_ACCESS_KEY_ID, creds.access_key_id))
            items.append(_secret_env(ENV_AWS_SECRET_ACCESS_KEY, creds.secret_access_key))
            if creds.endpoint_url:
                items.append({"name": ENV_S3_ENDPOINT_URL, "value": creds.endpoint_url})
            if creds.region:
                items.append({"name": "AWS_DEFAULT_REGION", "value": creds.region})
        if secrets.judge_api_key:
            items.append(_secret_env(ENV_JUDGE_API_KEY, secrets.judge_api_key))
    if resolved_uris:
        items.append({"name": ENV_RESOLVED_URIS, "value": json.dumps(dict(sorted(resolved_uris.items())))})
    return items


def resources(job: AlignmentJob) -> dict[str, Any]:
    res = job.spec.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu:
        requests["cpu"] = limits["cpu"] = res.cpu
    if res.memory:
        requests["memory"] = limits["memory"] = res.memory
    if res.gpus_per_node:
        limits[GPU] = requests[GPU] = str(res.gpus_per_node)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def volumes(job: AlignmentJob, resolved_uris: Mapping[str, str] | None = None
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): config, /dev/shm, scratch, /tmp and each PVC under /mnt/pvc/<claim>."""
    spec = job.spec
    vols: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_name(job.name)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
        {"name": "work", "emptyDir": {"sizeLimit": spec.checkpoints.size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT_PATH, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for index, claim in enumerate(pvc_claims(job, resolved_uris)):
        vols.append({"name": f"pvc-{index}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"pvc-{index}", "mountPath": f"{PVC_ROOT}/{claim}"})
    return vols, mounts


def security_contexts(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts meeting the `restricted` Pod Security Standard."""
    pod = {"runAsNonRoot": True, "runAsUser": settings.run_as_user, "runAsGroup": settings.run_as_user,
           "fsGroup": settings.run_as_user, "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
                 "runAsNonRoot": True, "readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"}}
    return pod, container


def scheduling(job: AlignmentJob) -> dict[str, Any]:
    res = job.spec.resources
    out: dict[str, Any] = {}
    selector = dict(res.node_selector or {})
    if res.gpu_type:
        selector["nvidia.com/gpu.product"] = res.gpu_type
    if selector:
        out["nodeSelector"] = selector
    tolerations = [t.to_dict() for t in res.tolerations or []]
    if res.gpus_per_node and not any(t.get("key") == GPU for t in tolerations):
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        out["tolerations"] = tolerations
    if res.priority_class_name:
        out["priorityClassName"] = res.priority_class_name
    return out


def pod_failure_policy() -> dict[str, Any]:
    """Fail the Job at once on a permanent trainer error; do not count evictions and preemptions."""
    return {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                              "values": sorted(ExitCode.PERMANENT)}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}


def render_job(job: AlignmentJob, namespace: str, settings: Settings,
               resolved_uris: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The batch/v1 Job that runs the trainer (owner references are added by the handler)."""
    spec, run = job.spec, job.spec.run_policy
    labels = child_labels(job)
    job_labels = dict(labels)
    if run.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = run.queue_name
    port = spec.metrics.port
    cmd, args = command(job)
    vols, mounts = volumes(job, resolved_uris)
    pod_security, container_security = security_contexts(settings)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.resources.image or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": cmd,
        "args": args,
        # The root filesystem is read-only: relative paths (./runs/<name>, the trainer's working directory when
        # spec.output.uri uploads the result) must land on the writable scratch volume, not in the image.
        "workingDir": WORK_DIR,
        "env": env(job, resolved_uris) + hub_env(job, settings),
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "securityContext": container_security,
        "terminationMessagePath": "/dev/termination-log",
        # The trainer writes its own message; a crash before it can (import error, OOM) leaves the log tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if uses_torchrun(job):
        container["ports"].append({"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"})
        # torchrun gives its ranks 30 s after forwarding SIGTERM before it kills them; give them the pod's grace
        # period (minus a margin for torchrun itself) to finish the step and write the checkpoint
        container["env"].append({"name": ENV_TORCH_SHUTDOWN_TIMEOUT,
                                 "value": str(max(5, settings.termination_grace_seconds - 10))})
    container_resources = resources(job)
    if container_resources:
        container["resources"] = container_resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # retries are the Job's (backoffLimit, podFailurePolicy), not the kubelet's
        "subdomain": service_name(job.name),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "containers": [container],
        "volumes": vols,
        **scheduling(job),
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": spec.resources.nodes,
        "parallelism": spec.resources.nodes,
        "backoffLimit": run.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        # Kueue admits a queued Job by unsuspending it; it must be created suspended.
        "suspend": bool(run.suspend or run.queue_name),
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(port),
                    "prometheus.io/path": "/metrics",
                    "kubectl.kubernetes.io/default-container": CONTAINER,
                },
            },
            "spec": pod_spec,
        },
    }
    if run.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = run.active_deadline_seconds
    if run.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = run.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(job.name), "namespace": namespace, "labels": job_labels},
        "spec": job_spec,
    }
