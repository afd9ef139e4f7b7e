"""Names shared by the API, the operator and the trainer: one place, no free-text status strings."""

from __future__ import annotations

from enum import StrEnum

GROUP = "align.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AlignmentJob"
PLURAL = "alignmentjobs"
SINGULAR = "alignmentjob"
SHORT_NAME = "aj"
CATEGORY = "align"
CRD_NAME = f"{PLURAL}.{GROUP}"
METRICS_PREFIX = "align_"


class Algorithm(StrEnum):
    SFT = "sft"
    REWARD = "reward"
    DPO = "dpo"
    KTO = "kto"
    CPO = "cpo"
    SIMPO = "simpo"
    ORPO = "orpo"
    PPO = "ppo"
    GRPO = "grpo"
    RLOO = "rloo"
    ONLINE_DPO = "online-dpo"
    REFT = "reft"
    RLAIF = "rlaif"
    TPO = "tpo"
    RPO = "rpo"


# What each algorithm is and needs (online, reference, own loop, ...): align_api.algorithms.TABLE.


class Phase(StrEnum):
    PENDING = "Pending"
    WAITING = "Waiting"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED})


class ConditionType(StrEnum):
    """KEP-1623 condition types of an AlignmentJob."""

    CREATED = "Created"
    WAITING = "Waiting"
    QUEUED = "Queued"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    EVALUATED = "Evaluated"
    #: False (reason NoLearningSignal) when the first grading batches gave every prompt's samples one reward
    LEARNING_SIGNAL = "LearningSignal"
    #: spec.promote: True once the asked checkpoint is the published final adapter (False: waiting, or why not)
    PROMOTED = "Promoted"


class Reason(StrEnum):
    """Machine-readable reasons for conditions, events and lastError."""

    INVALID_SPEC = "InvalidSpec"
    JOB_CREATED = "JobCreated"
    UPSTREAM_PENDING = "UpstreamPending"
    UPSTREAM_FAILED = "UpstreamFailed"
    QUEUED_BY_KUEUE = "QueuedByKueue"
    SUSPENDED_BY_USER = "SuspendedByUser"
    #: Stop requested (suspend or cancel): the trainer pods are checkpointing and exiting; not stopped yet.
    SUSPENDING = "Suspending"
    RESUMED = "Resumed"
    CANCELLED_BY_USER = "CancelledByUser"
    #: runPolicy.maxGpuHours or maxWallClockMinutes used up: the job is paused until a limit is raised.
    BUDGET_EXHAUSTED = "BudgetExhausted"
    BUDGET_WARNING = "BudgetWarning"  # 80% of a budget used
    PODS_RUNNING = "PodsRunning"
    TRAINING_SUCCEEDED = "TrainingSucceeded"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    UNSCHEDULABLE = "Unschedulable"
    OOM_KILLED = "OOMKilled"
    DIVERGED = "Diverged"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    POD_FAILURE_POLICY = "PodFailurePolicy"
    DATA_ERROR = "DataError"
    CONFIG_ERROR = "ConfigError"
    TRAINER_ERROR = "TrainerError"
    EVALUATION_GATE_FAILED = "EvaluationGateFailed"
    EVALUATION_PASSED = "EvaluationPassed"
    #: The evaluation ran but its scorer scored no sample: nothing was measured, so nothing passed.
    EVALUATION_UNSCORED = "EvaluationUnscored"
    #: Before any model was loaded, the trainer found a problem (data, grader templates, output, batch sizes).
    PREFLIGHT_FAILED = "PreflightFailed"
    #: The grader failed on more samples than spec.runPolicy.maxGraderErrorRate allows.
    GRADER_FAILING = "GraderFailing"
    #: The first grading batches gave every prompt's samples the same reward (spec.runPolicy.noLearningSignalSteps).
    NO_LEARNING_SIGNAL = "NoLearningSignal"
    JOB_DELETED = "JobDeleted"
    FORBIDDEN = "Forbidden"  # the operator's RBAC does not allow a call it needs
    #: spec.promote.step's checkpoint is the final adapter now; the steps before it:
    PROMOTED = "Promoted"
    PROMOTION_WAITING = "PromotionWaiting"      # training has not ended yet
    PROMOTING = "Promoting"                     # the promote Job runs
    PROMOTE_STEP_NOT_FOUND = "PromoteStepNotFound"
    PROMOTION_FAILED = "PromotionFailed"
    #: The namespace's ConfigMap align-defaults holds a value that is not a budget (ignored).
    INVALID_NAMESPACE_DEFAULTS = "InvalidNamespaceDefaults"
    JOB_FIELDS_DROPPED = "JobFieldsDropped"  # an older API server pruned Job fields (suspend, podFailurePolicy, ...)


class ExitCode:
    """Trainer exit codes. Codes 10-19 are permanent: the Job's podFailurePolicy fails fast on them."""

    OK = 0
    TRANSIENT = 1
    CONFIG_ERROR = 10
    DATA_ERROR = 11
    DIVERGED = 12
    EVALUATION_GATE_FAILED = 13
    UPSTREAM_ERROR = 14
    PREFLIGHT_FAILED = 15
    GRADER_FAILING = 16
    NO_LEARNING_SIGNAL = 17

    PERMANENT = (CONFIG_ERROR, DATA_ERROR, DIVERGED, EVALUATION_GATE_FAILED, UPSTREAM_ERROR, PREFLIGHT_FAILED,
                 GRADER_FAILING, NO_LEARNING_SIGNAL)
    REASONS = {
        CONFIG_ERROR: Reason.CONFIG_ERROR,
        DATA_ERROR: Reason.DATA_ERROR,
        DIVERGED: Reason.DIVERGED,
        EVALUATION_GATE_FAILED: Reason.EVALUATION_GATE_FAILED,
        UPSTREAM_ERROR: Reason.UPSTREAM_FAILED,
        PREFLIGHT_FAILED: Reason.PREFLIGHT_FAILED,
        GRADER_FAILING: Reason.GRADER_FAILING,
        NO_LEARNING_SIGNAL: Reason.NO_LEARNING_SIGNAL,
    }


#: Where the operator mounts the rendered manifest inside trainer pods.
CONFIG_MOUNT_PATH = "/etc/align"
CONFIG_FILE_NAME = "job.yaml"
DEFAULT_METRICS_PORT = 9400
#: Environment variables the operator sets from Secret references; the trainer reads only these.
ENV_HF_TOKEN = "HF_TOKEN"
ENV_AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
ENV_AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_S3_ENDPOINT_URL = "AWS_ENDPOINT_URL_S3"
ENV_JUDGE_API_KEY = "ALIGN_JUDGE_API_KEY"

#: TPO: the line between the hidden thought and the answer, and the paper's generic thought prompt (Wu et al.
#: 2024, Fig. 2) with it. Here (not in the trainer) so that spec validation can bound the prompt's length.
TPO_SEPARATOR = "<R>"
TPO_DEFAULT_THOUGHT_PROMPT = (
    "Respond to the following user query in a comprehensive and detailed way. But first write down your internal "
    "thoughts. This must include your draft response and its evaluation. After this, write your final response "
    f"after \"{TPO_SEPARATOR}\".\nUser query: {{query}}"
)
