"""AlignmentJob.status: phase, KEP-1623 conditions, progress, metrics, artifacts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import Field

from .common import SpecModel
from .constants import ConditionType, Phase


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Condition(SpecModel):
    """A KEP-1623 condition."""

    type: str = Field(description="Condition type, one of " + ", ".join(t.value for t in ConditionType) + ".")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: str = Field(default_factory=now_rfc3339, description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, description="metadata.generation this condition was computed from.")


class Progress(SpecModel):
    step: int = Field(default=0, ge=0, description="Optimizer steps done.")
    total_steps: int | None = Field(default=None, ge=0, description="Optimizer steps planned.")
    percent: float | None = Field(default=None, ge=0, le=100, description="step / totalSteps in percent.")
    epoch: float | None = Field(default=None, description="Fractional epoch.")
    eta_seconds: int | None = Field(default=None, description="Estimated seconds to the end.")
    updated_at: str | None = Field(default=None, description="When progress was last scraped.")


class Artifacts(SpecModel):
    adapter: str | None = Field(default=None, description="URI of the final policy adapter.")
    merged: str | None = Field(default=None, description="URI of the merged model, if requested.")
    checkpoints: list[str] | None = Field(default=None, description="Checkpoint locations.")
    report: str | None = Field(default=None, description="URI of the evaluation report.")
    metrics: str | None = Field(default=None, description="URI of metrics.jsonl.")


class PodUsage(SpecModel):
    """A trainer pod that was running when usage was last accounted (folded into the totals once it ends)."""

    uid: str = Field(description="The pod's uid.")
    gpus: int = Field(default=0, ge=0, description="GPUs the pod requests.")
    rank0: bool = Field(default=True, description="Whether it is the rank-0 pod (its time is the wall clock).")
    start: str = Field(description="When its container started running (RFC 3339).")
    until: str = Field(description="The last time it was seen running, or when it finished (RFC 3339).")


class Limit(SpecModel):
    """A budget in force and where it came from."""

    name: str = Field(description="maxGpuHours or maxWallClockMinutes.")
    value: float = Field(description="The limit.")
    source: str = Field(description=(
        "spec.runPolicy, or the namespace's ConfigMap (ConfigMap/align-defaults): the stricter of the two applies."))


class Usage(SpecModel):
    """What the trainer pods used, derived from their start and finish times (pauses excluded)."""

    gpu_hours: float = Field(default=0, ge=0, description="Running time x GPUs requested, in hours.")
    pod_hours: float = Field(default=0, ge=0, description="Running time of all trainer pods, in hours.")
    wall_clock_minutes: float = Field(default=0, ge=0, description="Running time of the rank-0 pod, in minutes.")
    budget_used: float | None = Field(default=None, ge=0, description=(
        "The largest fraction of a runPolicy budget (maxGpuHours, maxWallClockMinutes) used; 1 or more pauses "
        "the job."))
    warned: bool = Field(default=False, description="A BudgetWarning event was posted for this budget (80%).")
    settled: dict[str, float] | None = Field(default=None, description=(
        "Seconds of pods that ended: gpu, pod and wall (the totals are these plus the running pods)."))
    running: list[PodUsage] | None = Field(default=None, description="Trainer pods running at the last account.")
    counted: list[str] | None = Field(default=None, description="uids of ended pods already in `settled`.")
    limits: list[Limit] | None = Field(default=None, description=(
        "The budgets in force, each with its source: the job's runPolicy or its namespace's defaults."))


class Checkpoint(SpecModel):
    """A checkpoint the trainer keeps (spec.checkpoints.keep newest), as it listed it."""

    step: int = Field(ge=0, description="Optimizer step it was saved at.")
    time: str | None = Field(default=None, description="When it was saved (RFC 3339).")
    metrics: dict[str, float | None] | None = Field(default=None, description="Training metrics at that step.")
    evaluation: dict[str, float | None] | None = Field(default=None, description=(
        "Eval metrics logged at that step (eval_ prefix), where evaluation ran at the checkpoint."))
    uri: str | None = Field(default=None, description=(
        "Where it is (pvc://<checkpoints.volume>/<job>/checkpoints/checkpoint-<step>); none on an emptyDir, which "
        "goes with the pod."))


class Promotion(SpecModel):
    """The checkpoint spec.promote published as the final adapter."""

    step: int = Field(ge=0, description="The promoted checkpoint's step.")
    source: str | None = Field(default=None, description="The checkpoint it came from.")
    adapter: str | None = Field(default=None, description="Where the published adapter is (also artifacts.adapter).")
    time: str | None = Field(default=None, description="When it was published (RFC 3339).")
    evaluation: dict[str, float | None] | None = Field(default=None, description="Evaluation of the promoted adapter.")
    gates: list[str] | None = Field(default=None, description="spec.evaluation.gates re-run on it, with results.")


class LastError(SpecModel):
    reason: str = Field(description="Machine-readable reason.")
    message: str = Field(description="What went wrong (from the trainer's termination message when available).")
    time: str | None = Field(default=None, description="When it happened.")


class Status(SpecModel):
    phase: Phase = Field(default=Phase.PENDING, description=(
        "Pending, Waiting, Queued, Running, Suspended, Succeeded, Failed or Cancelled (docs/operator.md has the "
        "state diagram)."))
    conditions: list[Condition] = Field(default_factory=list, description="KEP-1623 conditions.")
    observed_generation: int | None = Field(default=None, description="Last metadata.generation reconciled.")
    job_name: str | None = Field(default=None, description="Name of the batch/v1 Job running the trainer.")
    progress: Progress | None = Field(default=None, description="Training progress scraped from the trainer.")
    metrics: dict[str, float | None] | None = Field(default=None, description="Latest key metrics (loss, rewards/margins, ...).")
    evaluation: dict[str, float | None] | None = Field(default=None, description="Evaluation results (winRate, rewardDelta, ...).")
    start_time: str | None = Field(default=None, description="When the trainer started running.")
    completion_time: str | None = Field(default=None, description="When the job finished.")
    restarts: int = Field(default=0, ge=0, description="Trainer pod restarts.")
    artifacts: Artifacts | None = Field(default=None, description="Outputs of the job.")
    last_error: LastError | None = Field(default=None, description=(
        "The error that explains the job's current state: why it is blocked (Pending), the failure behind a "
        "running retry, or why it failed. Removed once that is over (the pod was scheduled, the job succeeded); "
        "each error stays in the job's events."))
    checkpoints: list[Checkpoint] | None = Field(default=None, description="The kept checkpoints, oldest first.")
    promotion: Promotion | None = Field(default=None, description="The checkpoint published by spec.promote.")
    usage: Usage | None = Field(default=None, description="GPU-hours, pod-hours and wall clock used, and the budget.")
    resolved_uris: dict[str, str] | None = Field(default=None, description="job:// references resolved to artifact URIs.")
