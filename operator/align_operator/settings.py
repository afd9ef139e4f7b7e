"""Operator settings: every knob in one place, read from the environment with defaults.

The Helm chart sets these as environment variables of the operator Deployment; the local cluster sets
them for its in-process or subprocess operator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from align_api.constants import DEFAULT_METRICS_PORT

ENV_PREFIX = "ALIGN_OPERATOR_"
HF_OFFLINE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class Settings:
    """What an operator deployment may tune. Env: ALIGN_OPERATOR_<FIELD NAME IN UPPER CASE>."""

    trainer_image: str = field(default="ghcr.io/align-operator/trainer:0.1.0",
                               metadata={"help": "Image of the trainer pods (spec.resources.image overrides)."})
    image_pull_policy: str = field(default="IfNotPresent", metadata={"help": "imagePullPolicy of trainer pods."})
    namespaces: tuple[str, ...] = field(default=(), metadata={
        "help": "Namespaces to serve (comma-separated); empty = the whole cluster."})
    metrics_port: int = field(default=9090, metadata={
        "help": "Port of the operator's own /metrics (0 = off; the chart's liveness probe uses 8080)."})
    scrape_interval_seconds: float = field(default=15.0, metadata={
        "help": "Minimum seconds between two scrapes of one trainer's /metrics."})
    scrape_timeout_seconds: float = field(default=3.0, metadata={"help": "Timeout of one trainer scrape."})
    status_interval_seconds: float = field(default=10.0, metadata={
        "help": "Longest a running job's status goes without a refresh (Job/pod events refresh it sooner)."})
    upstream_poll_seconds: float = field(default=10.0, metadata={
        "help": "How often a Waiting job checks its upstream job:// dependencies."})
    namespace_defaults_seconds: float = field(default=30.0, metadata={
        "help": "How long a namespace's default budgets (ConfigMap align-defaults) are used before reading it again."})
    termination_grace_seconds: int = field(default=300, metadata={
        "help": "terminationGracePeriodSeconds of trainer pods: time to write a checkpoint on SIGTERM."})
    service_account: str = field(default="", metadata={
        "help": "serviceAccountName of trainer pods (empty = the namespace default; its token is not mounted)."})
    run_as_user: int = field(default=1000, metadata={"help": "UID the trainer runs as (non-root)."})
    default_metrics_port: int = field(default=DEFAULT_METRICS_PORT, metadata={
        "help": "Trainer metrics port for jobs whose spec.metrics.port is unset."})
    max_workers: int = field(default=0, metadata={
        "help": "Kopf's limit of objects handled in parallel per resource kind (0 = no limit)."})
    api_connections: int = field(default=16, metadata={
        "help": "Most concurrent API requests of each of the operator's two HTTP clients (Kopf's, plus its watch "
                "streams; the children/status client). Bounds memory in bursts: each TLS connection costs ~0.4 MB."})
    api_retries: int = field(default=8, metadata={"help": "Retries of 429/5xx/connection errors per API call."})
    forbidden_retry_seconds: float = field(default=30.0, metadata={
        "help": "Seconds between attempts while RBAC denies a call the operator needs (reported as Forbidden)."})
    log_format: str = field(default="plain", metadata={"help": "plain or json."})
    hf_disable_telemetry: bool = field(default=True, metadata={
        "help": "Set HF_HUB_DISABLE_TELEMETRY=1 in trainer pods (TRL and huggingface_hub send no usage pings)."})
    hf_offline: str = field(default="auto", metadata={
        "help": "HF_HUB_OFFLINE=1 in trainer pods: auto (when no model or dataset of the job comes from the hub), "
                "always or never."})
    webhook_port: int = field(default=0, metadata={
        "help": "HTTPS port of the validating admission webhook (0 = off; the chart uses 9443)."})
    webhook_addr: str = field(default="0.0.0.0", metadata={"help": "Address the admission webhook listens on."})
    webhook_cert_dir: str = field(default="/etc/align/webhook-tls", metadata={
        "help": "Directory holding the webhook's tls.crt and tls.key (the chart mounts its TLS Secret here)."})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            if f.type in ("bool", bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            elif f.name == "namespaces":
                values[f.name] = tuple(ns.strip() for ns in raw.split(",") if ns.strip())
            else:
                values[f.name] = raw
        settings = replace(cls(**values), **overrides)
        if settings.hf_offline not in HF_OFFLINE_MODES:
            raise ValueError(f"{ENV_PREFIX}HF_OFFLINE={settings.hf_offline!r}: use one of {', '.join(HF_OFFLINE_MODES)}")
        return settings

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (for a subprocess operator)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[ENV_PREFIX + f.name.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
        return out
