"""Typed trainer errors. Each maps to one exit code and one Reason, so the operator can tell a bad spec or
bad data (permanent: fail fast) from a crash (transient: retry)."""

from __future__ import annotations

from align_api.constants import ExitCode, Reason


class TrainerError(Exception):
    """Base class: an error the entry point turns into an exit code and a termination message."""

    exit_code: int = ExitCode.TRANSIENT
    reason: str = Reason.TRAINER_ERROR


class ConfigError(TrainerError):
    """The manifest is invalid or asks for something this machine cannot do (e.g. 4-bit without CUDA)."""

    exit_code = ExitCode.CONFIG_ERROR
    reason = Reason.CONFIG_ERROR


class DataError(TrainerError):
    """A dataset is missing or malformed; the message names the file, line and field."""

    exit_code = ExitCode.DATA_ERROR
    reason = Reason.DATA_ERROR


class Diverged(TrainerError):
    """Loss or gradient norm became NaN/inf: retrying from the same checkpoint would diverge again."""

    exit_code = ExitCode.DIVERGED
    reason = Reason.DIVERGED


class UpstreamError(TrainerError):
    """An artifact of another job (job://name) or an external store is unavailable."""

    exit_code = ExitCode.UPSTREAM_ERROR
    reason = Reason.UPSTREAM_FAILED


class Interrupted(TrainerError):
    """SIGTERM arrived: a checkpoint was written and the pod should exit so a restart can resume."""

    exit_code = ExitCode.TRANSIENT
    reason = Reason.TRAINER_ERROR


class EvaluationGateFailed(TrainerError):
    """spec.evaluation.gates failed: the adapter is kept locally but not published (uploaded)."""

    exit_code = ExitCode.EVALUATION_GATE_FAILED
    reason = Reason.EVALUATION_GATE_FAILED


class PromoteStepNotFound(TrainerError):
    """spec.promote.step names no kept, valid checkpoint (the message lists the kept steps)."""

    exit_code = ExitCode.CONFIG_ERROR
    reason = Reason.PROMOTE_STEP_NOT_FOUND


class PreflightFailed(TrainerError):
    """The preflight (before any model is loaded) found problems; the message names each spec field."""

    exit_code = ExitCode.PREFLIGHT_FAILED
    reason = Reason.PREFLIGHT_FAILED


class GraderFailing(TrainerError):
    """The grader failed on more gradings than spec.runPolicy.maxGraderErrorRate allows: training stops."""

    exit_code = ExitCode.GRADER_FAILING
    reason = Reason.GRADER_FAILING


class NoLearningSignal(TrainerError):
    """spec.runPolicy.failOnNoLearningSignal: the first grading batches gave every prompt's samples one reward."""

    exit_code = ExitCode.NO_LEARNING_SIGNAL
    reason = Reason.NO_LEARNING_SIGNAL
