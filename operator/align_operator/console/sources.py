"""Everything the console reads, through the user's kubeconfig (an AlignClient: get/list/watch, events, pods/log)
and the job's published artifacts (metrics.jsonl, evaluation.json) where this process can read their URIs.
Read-only by construction: no method here writes to the cluster or to an artifact.

Blocking (the kubernetes client is synchronous): server.py calls these in worker threads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from align_operator.client import AlignClient, ClusterError
from align_operator.console import series

EVALUATION_FILE = "evaluation.json"  # align_trainer.evaluation.outputs.EVALUATION_FILE (the trainer is not imported here)
#: Log lines read for the curves of a job whose metrics.jsonl is not readable (a running job).
LOG_TAIL = 50_000


class Unreadable(Exception):
    """An artifact URI this process cannot read (another machine's path, a PVC, a scheme without a reader)."""


def read_artifact(uri: str) -> bytes:
    """The bytes at an artifact URI: a local path or file:// (the local control plane, a shared volume), s3://
    with boto3 and the usual AWS credentials. Anything else is Unreadable, with the reason."""
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    if uri.startswith("/"):
        try:
            return Path(uri).read_bytes()
        except OSError as exc:
            raise Unreadable(f"{uri}: {exc.strerror or exc}") from None
    if uri.startswith("s3://"):
        try:
            import boto3
        except ImportError:
            raise Unreadable(f"{uri}: reading s3:// needs boto3 (pip install 'align-operator[trainer]')") from None
        bucket, _, key = uri[len("s3://"):].partition("/")
        try:
            return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - botocore's errors (credentials, not found) are all "unreadable"
            raise Unreadable(f"{uri}: {exc}") from None
    raise Unreadable(f"{uri}: not readable from the console (only local paths, file:// and s3://)")


def _records(data: bytes) -> list[dict[str, Any]]:
    """metrics.jsonl records, read as metrics_plot.read_metrics reads the file (a torn last line is skipped)."""
    records = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class ClusterSource:
    """The console's view of one cluster. `list` results are cached for `ttl` seconds so that several open
    browser tabs polling the jobs list cost the API server one list per interval."""

    def __init__(self, client: AlignClient, *, all_namespaces: bool = False, ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.all_namespaces = all_namespaces
        self.ttl, self._clock = ttl, clock
        self._lists: dict[tuple[str, str], tuple[float, list[dict[str, Any]]]] = {}
        self._logs: dict[tuple[str, str, int | None], tuple[float, tuple[str | None, list[str]]]] = {}
        self._lock = threading.Lock()

    @property
    def default_namespace(self) -> str:
        return "" if self.all_namespaces else self.client.namespace

    def jobs(self, namespace: str = "", label_selector: str = "") -> list[dict[str, Any]]:
        """AlignmentJobs of `namespace` ("" = the console's default: every namespace with -A, else its own)."""
        ns = namespace or self.default_namespace
        key = (ns, label_selector)
        with self._lock:
            cached = self._lists.get(key)
            if cached and self._clock() - cached[0] < self.ttl:
                return cached[1]
        items = self.client.list(all_namespaces=not ns, namespace=ns or None, label_selector=label_selector or None)
        with self._lock:
            self._lists[key] = (self._clock(), items)
        return items

    def job(self, namespace: str, name: str) -> dict[str, Any]:
        return self.client.get(name, namespace)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.client.events(name, namespace)

    def trainer_pod(self, namespace: str, name: str) -> str | None:
        pods = self.client.trainer_pods(name, namespace)
        return (pods[0].get("metadata") or {}).get("name") if pods else None

    def log_lines(self, namespace: str, name: str, tail: int | None = LOG_TAIL) -> tuple[str | None, list[str]]:
        """(pod, lines) of the job's rank-0 trainer pod; (None, []) before it exists. Cached for `ttl` seconds
        like the list: a job page and a comparison open side by side read the log once per interval."""
        key = (namespace, name, tail)
        with self._lock:
            cached = self._logs.get(key)
            if cached and self._clock() - cached[0] < self.ttl:
                return cached[1]
        pod = self.trainer_pod(namespace, name)
        lines: list[str] = []
        if pod is not None:
            try:
                lines = list(self.client.logs(pod, namespace, tail=tail))
            except ClusterError as exc:
                if exc.status not in (400, 404):  # 400/404: the container has not started yet, or the pod is gone
                    raise
        with self._lock:
            self._logs[key] = (self._clock(), (pod, lines))
        return pod, lines

    def curves(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """The job's curves and where they came from: its published metrics.jsonl when readable, else the
        progress lines of its trainer log (a running job, or one whose artifacts live where we cannot read)."""
        meta = obj.get("metadata") or {}
        uri = ((obj.get("status") or {}).get("artifacts") or {}).get("metrics")
        note = None
        if uri:
            try:
                return {"source": "metrics.jsonl", "uri": uri, **series.table(_records(read_artifact(str(uri))))}
            except Unreadable as exc:
                note = str(exc)
        pod, lines = self.log_lines(meta.get("namespace", ""), meta.get("name", ""))
        out = {"source": "trainer log", "pod": pod, **series.table(series.records_from_log(lines))}
        if note:
            out["note"] = note
        return out

    def evaluation(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """(evaluation.json, None), or (None, why not): it lies next to the report the trainer published."""
        report = ((obj.get("status") or {}).get("artifacts") or {}).get("report")
        if not report:
            return None, "no evaluation report published (status.artifacts.report is empty)"
        uri = str(report).rsplit("/", 1)[0] + "/" + EVALUATION_FILE
        try:
            return json.loads(read_artifact(uri)), None
        except Unreadable as exc:
            return None, str(exc)
        except ValueError as exc:
            return None, f"{uri}: not JSON ({exc})"
