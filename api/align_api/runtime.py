"""spec.resources, checkpoints, output, runPolicy, secrets and metrics: how and where the job runs."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .common import K8sName, OutputURI, SecretKeyRef, SpecModel

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def _quantity(value: str | None) -> str | None:
    if value is not None and not _QUANTITY.match(str(value)):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 8, 500m, 32Gi)")
    return value


def _reject_literal_secrets(data: Any, keys: tuple[str, ...]) -> Any:
    """A string where a Secret reference belongs is a pasted credential: refuse it before it is stored."""
    if isinstance(data, dict):
        for key in keys:
            if isinstance(data.get(key), str):
                raise ValueError(f"{key}: a literal secret value is not allowed; reference a Secret "
                                 "with {name: <secret>, key: <key>}")
    return data


class Toleration(SpecModel):
    key: str | None = Field(default=None, description="Taint key.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(default=None, description="Taint effect.")
    toleration_seconds: int | None = Field(default=None, description="For NoExecute: how long to stay bound.")


class Resources(SpecModel):
    """Compute for the trainer pods."""

    nodes: int = Field(default=1, ge=1, le=512, description="Pods (nodes) in the job; >1 uses torchrun multi-node.")
    gpus_per_node: int = Field(default=1, ge=0, le=16, description="nvidia.com/gpu per pod; 0 runs on CPU.")
    processes_per_node: int | None = Field(
        default=None, ge=1, le=64,
        description="Trainer processes (ranks) per pod. Default: one per GPU, or 1 on CPU. With gpusPerNode: 0 and "
                    "more than one rank in total (nodes or processesPerNode > 1) the ranks talk over gloo on CPU.")
    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp",
        description="Data parallelism across ranks: ddp (each rank holds the whole model, gradients all-reduced) "
                    "or fsdp (parameters, gradients and optimizer state sharded: bases that do not fit one GPU; "
                    "TRL-based algorithms only).")
    collective_timeout_seconds: int = Field(
        default=600, ge=30, le=86_400,
        description="Timeout of every collective (all-reduce, barrier) between ranks: a rank that died fails the "
                    "others after this long instead of hanging them.")
    gpu_type: str | None = Field(default=None, max_length=128,
                                 description="Value of the nvidia.com/gpu.product node label to schedule on.")
    cpu: str | None = Field(default=None, description="CPU request/limit per pod (quantity).")
    memory: str | None = Field(default=None, description="Memory request/limit per pod (quantity).")
    shm_size: str = Field(default="8Gi", description="Size of the /dev/shm in-memory volume.")
    node_selector: dict[str, str] | None = Field(default=None, description="Extra node selector labels.")
    tolerations: list[Toleration] | None = Field(default=None, description="Tolerations for GPU node taints.")
    priority_class_name: str | None = Field(default=None, max_length=253, description="PriorityClass of the pods.")
    image: str | None = Field(default=None, max_length=512, description="Trainer image override (default from the operator).")

    _quantities = field_validator("cpu", "memory", "shm_size")(lambda cls, v: _quantity(v))

    @model_validator(mode="after")
    def _ranks_match_gpus(self) -> "Resources":
        if self.gpus_per_node and self.processes_per_node not in (None, self.gpus_per_node):
            raise ValueError(f"[processesPerNode] {self.processes_per_node} != gpusPerNode "
                             f"{self.gpus_per_node}: on GPUs there is one rank per GPU (leave processesPerNode unset)")
        if self.strategy == "fsdp" and not self.gpus_per_node:
            # accelerate turns FSDP on only for accelerators; on CPU it would silently run DDP instead
            raise ValueError("[strategy] fsdp needs GPUs (gpusPerNode >= 1); CPU ranks use ddp")
        return self

    @property
    def ranks_per_node(self) -> int:
        """torchrun's --nproc-per-node: one rank per GPU, else processesPerNode (default 1) CPU ranks."""
        return self.gpus_per_node or self.processes_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_node


class Checkpoints(SpecModel):
    """Periodic, atomic checkpoints; a restarted pod resumes from the newest valid one."""

    every_steps: int = Field(default=50, ge=1, le=1_000_000, description="Save a checkpoint every N optimizer steps.")
    keep: int = Field(default=2, ge=1, le=100, description="Checkpoints to keep (older ones are deleted).")
    volume: K8sName | None = Field(default=None, description="PVC for checkpoints; an emptyDir (lost with the pod) when unset.")
    size: str = Field(default="20Gi", description="emptyDir size limit when no volume is given.")

    _size = field_validator("size")(lambda cls, v: _quantity(v))


class Promote(SpecModel):
    """Publish a kept checkpoint as the job's final adapter (GitOps: set it in the manifest, or `alignctl promote`)."""

    step: int = Field(ge=1, le=1_000_000_000, description=(
        "The step of a kept checkpoint (status.checkpoints) to publish as the job's final adapter once training has "
        "ended (Succeeded, Failed or Cancelled): written aside and renamed over final/ (and uploaded to "
        "spec.output.uri), the model card naming the step and the source checkpoint, spec.evaluation.gates "
        "re-run on it. Retention (checkpoints.keep) never deletes it. A step with no kept checkpoint is an error "
        "that lists the kept ones."))


class Output(SpecModel):
    """Where the final adapter goes."""

    uri: OutputURI | None = Field(default=None, description="file://, s3://bucket/prefix or pvc://claim/path; default: the checkpoint volume.")
    merge: bool = Field(default=False, description="Also save the base model with the adapter merged in.")


class RunPolicy(SpecModel):
    """Lifecycle of the trainer Job."""

    backoff_limit: int = Field(default=3, ge=0, le=100, description="Pod restarts (retryable failures) before the job fails.")
    active_deadline_seconds: int | None = Field(default=None, ge=60, description="Fail the job after this many seconds.")
    suspend: bool = Field(default=False, description=(
        "Pause while true: the trainer checkpoints (SIGTERM) and its pods go; phase Suspended once no pod runs. "
        "Setting it false resumes the same run from its newest checkpoint. Servers without Job suspend "
        "(Kubernetes < 1.21) get the Job deleted and re-created under the same name."))
    cancel: bool = Field(default=False, description=(
        "Stop for good: the trainer checkpoints and its pods go, checkpoints, metrics and logs are kept, and the "
        "job ends in phase Cancelled (final; deleting the object is a separate step). Cannot be unset."))
    max_gpu_hours: float | None = Field(default=None, gt=0, le=10_000_000, description=(
        "Budget: pause the job (phase Suspended, reason BudgetExhausted, checkpoint kept) once its trainer pods have "
        "run this many GPU-hours (running time x GPUs requested; a CPU job counts pod-hours). A Warning event at "
        "80%. Raising it resumes the job."))
    max_wall_clock_minutes: float | None = Field(default=None, gt=0, le=10_000_000, description=(
        "Budget: pause the job (reason BudgetExhausted) once its trainer has run this many minutes (the rank-0 "
        "pod's running time, pauses excluded). A Warning event at 80%. Raising it resumes the job."))
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, description="Delete the Job this long after it finishes.")
    queue_name: str | None = Field(default=None, max_length=63, description="Kueue LocalQueue (sets kueue.x-k8s.io/queue-name).")
    max_grader_error_rate: float = Field(
        default=0.5, ge=0, le=1,
        description="Stop training (reason GraderFailing) when the grader fails on more than this fraction of the "
                    "gradings in the last graderErrorWindow steps; 1 never stops.")
    grader_error_window: int = Field(default=3, ge=1, le=10_000,
                                     description="Grading batches (training steps) the grader error rate is measured over.")
    no_learning_signal_steps: int = Field(
        default=4, ge=0, le=10_000,
        description="Online algorithms: when the rewards of every prompt's samples are identical (no variance: nothing "
                    "to learn from) in each of the first this many grading batches, warn with an event, the condition "
                    "LearningSignal=False (reason NoLearningSignal) and the metric align_trainer_warning, quoting "
                    "sampled answers beside what the grader compared them with; 0 never checks.")
    fail_on_no_learning_signal: bool = Field(
        default=False, description="Fail the job (reason NoLearningSignal) instead of warning, see noLearningSignalSteps.")


class Secrets(SpecModel):
    """Credentials, by reference only. The operator maps them to environment variables of the trainer."""

    hugging_face_token: SecretKeyRef | None = Field(default=None, description="Secret key holding a Hugging Face token (HF_TOKEN).")
    storage_credentials: "StorageCredentials | None" = Field(default=None, description="S3-compatible storage credentials.")
    judge_api_key: SecretKeyRef | None = Field(default=None, description="API key of the judge's OpenAI-compatible endpoint.")

    _no_literals = model_validator(mode="before")(
        lambda cls, data: _reject_literal_secrets(data, ("huggingFaceToken", "hugging_face_token", "judgeApiKey",
                                                         "judge_api_key")))


class StorageCredentials(SpecModel):
    access_key_id: SecretKeyRef = Field(description="Secret key holding AWS_ACCESS_KEY_ID.")
    secret_access_key: SecretKeyRef = Field(description="Secret key holding AWS_SECRET_ACCESS_KEY.")
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://", description="S3 endpoint (MinIO, Ceph); not a secret.")
    region: str | None = Field(default=None, max_length=64, description="S3 region.")

    _no_literals = model_validator(mode="before")(
        lambda cls, data: _reject_literal_secrets(data, ("accessKeyId", "secretAccessKey", "access_key_id",
                                                         "secret_access_key")))


Secrets.model_rebuild()


class Metrics(SpecModel):
    """The trainer's Prometheus endpoint."""

    port: int = Field(default=9400, ge=1024, le=65535, description="Port of the trainer's /metrics endpoint.")
