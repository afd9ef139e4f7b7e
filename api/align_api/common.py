"""Base models and URI types shared by every part of the spec."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """A spec object: camelCase keys in YAML, unknown keys are errors."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=True,
    )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class OpenAIModel(BaseModel):
    """An object copied verbatim from OpenAI's API: snake_case keys exactly as OpenAI's."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, mode="json")


BUILTIN_MODELS = ("tiny", "tiny-rl", "small")

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(@[A-Za-z0-9._/-]+)?$")
_S3 = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
_PVC = re.compile(r"^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?$")
_JOB = re.compile(r"^job://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(@[0-9]{1,9})?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _check_uri(value: str, *, allow_job: bool, allow_builtin: bool, allow_hub: bool, allow_path: bool) -> str:
    if not value or value != value.strip():
        raise ValueError("must be a non-empty URI without surrounding spaces")
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme == "builtin":
        name = value[len("builtin://"):]
        if not allow_builtin:
            raise ValueError("builtin:// models cannot be used here")
        if name not in BUILTIN_MODELS:
            raise ValueError(f"unknown builtin model {name!r}; allowed: " + ", ".join(f"builtin://{n}" for n in BUILTIN_MODELS))
        return value
    if scheme == "s3":
        if not _S3.match(value):
            raise ValueError("s3 URIs look like s3://bucket/prefix (bucket: 3-63 lowercase letters, digits, '.', '-')")
        return value
    if scheme == "pvc":
        if not _PVC.match(value):
            raise ValueError("pvc URIs look like pvc://claim-name/path/inside/the/volume")
        return value
    if scheme == "file":
        if len(value) <= len("file://"):
            raise ValueError("file URIs need a path: file:///abs/path or file://relative/path")
        return value
    if scheme == "job":
        if not allow_job:
            raise ValueError("job://<name> (another AlignmentJob's output) is allowed only for adapters, "
                             "reference adapters and reward models")
        if not _JOB.match(value):
            raise ValueError("job URIs look like job://<alignmentjob-name> (a DNS-1123 name in the same namespace), "
                             "or job://<name>@<step> for one of its kept checkpoints")
        return value
    if scheme == "hf":
        if not _HUB_ID.match(value[len("hf://"):]):
            raise ValueError("hf URIs look like hf://org/name")
        return value
    if scheme:
        raise ValueError(f"unsupported scheme {scheme!r}; use builtin://, file://, s3://, pvc://, hf://"
                         + (", job://" if allow_job else "") + " or a hub id")
    if allow_path and (value.startswith(("/", "./", "../")) or value.endswith((".jsonl", ".json", ".parquet", ".csv"))):
        return value
    if allow_hub and _HUB_ID.match(value):
        return value
    raise ValueError(f"{value!r} is not a model/dataset URI: expected a hub id (org/name), builtin://tiny, "
                     "file://, s3://bucket/key or pvc://claim/path")


def _model_uri(value: str) -> str:
    return _check_uri(value, allow_job=False, allow_builtin=True, allow_hub=True, allow_path=True)


def _artifact_uri(value: str) -> str:
    return _check_uri(value, allow_job=True, allow_builtin=True, allow_hub=True, allow_path=True)


def _data_uri(value: str) -> str:
    return _check_uri(value, allow_job=False, allow_builtin=False, allow_hub=True, allow_path=True)


def _output_uri(value: str) -> str:
    return _check_uri(value, allow_job=False, allow_builtin=False, allow_hub=False, allow_path=True)


ModelURI = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_model_uri)]
"""Base model location: hub id, builtin://, file://, s3://, pvc://."""
ArtifactURI = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_artifact_uri)]
"""Adapter / reward model location: as ModelURI plus job://<name> (its final adapter) or job://<name>@<step> (the
checkpoint it kept at that step, status.checkpoints)."""
DataURI = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_data_uri)]
OutputURI = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_output_uri)]


def _k8s_name(value: str) -> str:
    if len(value) > 253 or not _DNS1123.match(value):
        raise ValueError("must be a DNS-1123 name: lowercase letters, digits and '-', starting and ending alphanumeric")
    return value


K8sName = Annotated[str, StringConstraints(max_length=253), AfterValidator(_k8s_name)]


class SecretKeyRef(SpecModel):
    """A reference to one key of a Kubernetes Secret in the job's namespace. The value is never copied."""

    name: K8sName = Field(description="Name of the Secret in the AlignmentJob's namespace.")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
                     description="Key inside the Secret whose value is used.")


def is_job_uri(value: str | None) -> bool:
    return bool(value) and value.startswith("job://")


def job_uri_name(value: str) -> str:
    return value[len("job://"):]
