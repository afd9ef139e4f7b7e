"""Python SDK: build, validate, submit, inspect and watch AlignmentJobs on any cluster.

The same `align_api` models the operator and the trainer use; the transport is the official `kubernetes`
client, configured from a kubeconfig (file, context), in-cluster credentials, or an explicit host.

    from align_operator.client import AlignClient, build

    job = build("dpo-demo", algorithm="dpo", model="Qwen/Qwen2.5-0.5B-Instruct", train="s3://bucket/pref.jsonl")
    client = AlignClient(context="gpu-cluster", namespace="research")
    client.submit(job)
    final = client.wait("dpo-demo", timeout=3600)   # the object once Succeeded or Failed
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from align_api import API_VERSION, GROUP, KIND, PLURAL, VERSION, AlignmentJob, Phase, validate_document
from align_api.constants import TERMINAL_PHASES
from align_api.status import Status

from .events import event_time, is_about, timestamp

FIELD_MANAGER = "alignctl"
#: Labels that tie a pod to its trainer Job (the Job controller sets the first two on every pod).
POD_JOB_LABELS = ("batch.kubernetes.io/job-name", "job-name")
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
#: The label the operator puts on every child of a job (align_operator.renderers.names.JOB_LABEL).
JOB_LABEL = f"{GROUP}/job"
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ClusterError(RuntimeError):
    """The API server refused or could not be reached; the message is meant for a human."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class JobNotFound(ClusterError, LookupError):
    """No AlignmentJob with that name in that namespace."""


def build(name: str, *, algorithm: str, model: str | Mapping[str, Any], train: str | Mapping[str, Any],
          eval: str | Mapping[str, Any] | None = None, namespace: str | None = None,
          labels: Mapping[str, str] | None = None, **spec: Any) -> AlignmentJob:
    """An AlignmentJob from keyword arguments, validated. `spec` takes any other spec field (camelCase or snake_case).

    `model` and `train`/`eval` accept a URI string as shorthand for {base: uri} / {uri: uri}.
    """
    data: dict[str, Any] = {"train": {"uri": train} if isinstance(train, str) else dict(train)}
    if eval is not None:
        data["eval"] = {"uri": eval} if isinstance(eval, str) else dict(eval)
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    doc = {
        "apiVersion": API_VERSION, "kind": KIND, "metadata": metadata,
        "spec": {"algorithm": algorithm, "model": {"base": model} if isinstance(model, str) else dict(model),
                 "data": data, **spec},
    }
    return validate_document(doc)


def manifest(job: AlignmentJob | Mapping[str, Any]) -> dict[str, Any]:
    """The validated manifest as a plain dict, without status (what is sent to the API server)."""
    model = job if isinstance(job, AlignmentJob) else validate_document(dict(job))
    doc = model.to_dict()
    doc.pop("status", None)
    return doc


def phase_of(obj: Mapping[str, Any]) -> str:
    """The job's phase; Pending until the operator has written a status."""
    return str((obj.get("status") or {}).get("phase") or Phase.PENDING.value)


def parse_status(obj: Mapping[str, Any]) -> Status:
    """status as the typed model, ignoring fields this client does not know (a newer operator may add some)."""
    raw = dict(obj.get("status") or {})
    known = {f.alias or n for n, f in Status.model_fields.items()} | set(Status.model_fields)
    return Status.model_validate({k: v for k, v in raw.items() if k in known})


def _api_message(exc: Exception) -> tuple[str, int | None]:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    message = getattr(exc, "reason", None) or str(exc)
    if body:
        try:
            message = json.loads(body).get("message") or message
        except (ValueError, AttributeError):
            message = body.decode() if isinstance(body, bytes) else str(body)
    return str(message).strip(), status


class AlignClient:
    """AlignmentJobs, their events, trainer pods and logs in one namespace of one cluster."""

    def __init__(self, *, kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None,
                 namespace: str | None = None, host: str | None = None, token: str | None = None,
                 verify_ssl: bool = True, api_client: Any = None, request_timeout: float | None = 60.0):
        from kubernetes import client, config

        self._client_mod = client
        if api_client is None:
            api_client, default_ns = self._connect(config, client, kubeconfig, context, host, token, verify_ssl)
        else:
            default_ns = None
        self.api_client = api_client
        self.namespace = namespace or default_ns or "default"
        #: Seconds before a (non-streaming) call gives up; the kubernetes client has no timeout of its own.
        self.request_timeout = request_timeout
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    @staticmethod
    def _connect(config: Any, client: Any, kubeconfig: Any, context: str | None, host: str | None,
                 token: str | None, verify_ssl: bool) -> tuple[Any, str | None]:
        if host:
            cfg = client.Configuration(host=host.rstrip("/"))
            cfg.verify_ssl = verify_ssl
            if token:
                cfg.api_key = {"authorization": f"Bearer {token}"}
            return client.ApiClient(cfg), None
        path = str(kubeconfig) if kubeconfig else None
        try:
            api = config.new_client_from_config(config_file=path, context=context, persist_config=False)
            contexts, active = config.list_kube_config_contexts(path)
            chosen = next((c for c in contexts if c["name"] == context), active) if context else active
            return api, (chosen or {}).get("context", {}).get("namespace")
        except (config.ConfigException, FileNotFoundError, OSError) as exc:
            if path is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                ns = _SA_NAMESPACE.read_text().strip() if _SA_NAMESPACE.exists() else None
                return client.ApiClient(cfg), ns
            raise ClusterError(f"cannot load kubeconfig{f' {path}' if path else ''}"
                               f"{f' (context {context})' if context else ''}: {exc}") from None

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    # --- calls with readable errors -------------------------------------------------------------

    def _call(self, fn: Any, *args: Any, not_found: str | None = None, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if self.request_timeout is not None:
            kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            message, status = _api_message(exc)
            if status == 404 and not_found:
                raise JobNotFound(not_found, 404) from None
            raise ClusterError(f"{message} (HTTP {status})" if status else message, status) from None
        except HTTPError as exc:
            raise ClusterError(f"cannot reach the API server at {self.host}: {exc}") from None

    def _custom(self, verb: str, *args: Any, **kwargs: Any) -> Any:
        return self._call(getattr(self.custom, f"{verb}_namespaced_custom_object"), GROUP, VERSION, *args, **kwargs)

    # --- AlignmentJobs -------------------------------------------------------------------------

    def submit(self, job: AlignmentJob | Mapping[str, Any], *, dry_run: bool = False,
               force: bool = False) -> tuple[dict[str, Any], bool]:
        """Server-side apply (field manager `alignctl`); returns (object, created).

        `force` takes over fields another manager owns (kubectl's --force-conflicts); off by default, as there.
        """
        doc = manifest(job)
        meta = doc["metadata"]
        namespace = meta.get("namespace") or self.namespace
        meta["namespace"] = namespace
        name = meta.get("name")
        extra = {"dry_run": "All"} if dry_run else {}
        if not name:  # generateName cannot be applied server-side: the server must choose the name.
            obj = self._custom("create", namespace, PLURAL, doc, field_manager=FIELD_MANAGER, **extra)
            return obj or doc, True
        created = not self.exists(name, namespace)
        try:
            obj = self._custom("patch", namespace, PLURAL, name, doc, field_manager=FIELD_MANAGER, force=force,
                               _content_type="application/apply-patch+yaml", **extra)
        except ClusterError as exc:
            # A real API server creates on apply; a 404 there means a missing namespace or CRD and create
            # below fails with the same message. Simpler servers (emulators) only create on POST.
            if exc.status != 404:
                raise
            obj = self._custom("create", namespace, PLURAL, doc, field_manager=FIELD_MANAGER, **extra)
        if not obj and not dry_run:
            obj = self.get(name, namespace)
        return obj or doc, created

    def exists(self, name: str, namespace: str | None = None) -> bool:
        try:
            self.get(name, namespace)
            return True
        except JobNotFound:
            return False

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        return self._custom("get", ns, PLURAL, name, not_found=f'alignmentjob "{name}" not found in namespace "{ns}"')

    def get_job(self, name: str, namespace: str | None = None) -> AlignmentJob:
        """The job as typed models (spec validated, status parsed leniently)."""
        obj = self.get(name, namespace)
        doc = {k: obj[k] for k in ("apiVersion", "kind", "spec") if k in obj}
        meta = obj.get("metadata") or {}
        doc["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
        job = validate_document(doc)
        if obj.get("status"):
            job.status = parse_status(obj)
        return job

    def list(self, *, all_namespaces: bool = False, label_selector: str | None = None,
             namespace: str | None = None) -> list[dict[str, Any]]:
        extra = {"label_selector": label_selector} if label_selector else {}
        if all_namespaces:
            result = self._call(self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, **extra)
        else:
            result = self._custom("list", namespace or self.namespace, PLURAL, **extra)
        items = list((result or {}).get("items") or [])
        return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"].get("name", "")))

    def delete(self, name: str, namespace: str | None = None) -> None:
        """Delete the job; its Job, pods and ConfigMap go with it (owner references, foreground)."""
        ns = namespace or self.namespace
        self._custom("delete", ns, PLURAL, name, propagation_policy="Foreground",
                     not_found=f'alignmentjob "{name}" not found in namespace "{ns}"')

    def set_suspend(self, name: str, suspend: bool, namespace: str | None = None) -> dict[str, Any]:
        """Flip spec.runPolicy.suspend with a merge patch (an apply would drop the rest of alignctl's fields)."""
        return self._set_run_policy(name, {"suspend": suspend}, namespace)

    def cancel(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """Set spec.runPolicy.cancel: the trainer checkpoints and stops, the job ends Cancelled and stays."""
        return self._set_run_policy(name, {"cancel": True}, namespace)

    def promote(self, name: str, step: int, namespace: str | None = None) -> dict[str, Any]:
        """Set spec.promote.step: the operator publishes that kept checkpoint as the final adapter."""
        ns = namespace or self.namespace
        return self._custom("patch", ns, PLURAL, name, {"spec": {"promote": {"step": step}}},
                            _content_type="application/merge-patch+json",
                            not_found=f'alignmentjob "{name}" not found in namespace "{ns}"')

    def _set_run_policy(self, name: str, fields: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        ns = namespace or self.namespace
        return self._custom("patch", ns, PLURAL, name, {"spec": {"runPolicy": fields}},
                            _content_type="application/merge-patch+json",
                            not_found=f'alignmentjob "{name}" not found in namespace "{ns}"')

    # --- events, pods, logs --------------------------------------------------------------------

    def events(self, name: str, namespace: str | None = None, *, include_job: bool = True) -> list[dict[str, Any]]:
        """Events about the AlignmentJob (and its trainer Job), oldest first. Matched by the object's uid, so an
        earlier, deleted object of the same name lends none of its events to this one."""
        ns = namespace or self.namespace
        objects = [self.get(name, ns)]
        job_name = (objects[0].get("status") or {}).get("jobName")
        if include_job and job_name:
            try:
                result = self._call(self.batch.read_namespaced_job, job_name, ns, _preload_content=False,
                                    not_found=job_name)
                objects.append(json.loads(result.data or b"{}"))
            except JobNotFound:
                pass  # not made yet, or already gone: no events of its own to show
        # Field selectors are a server optimisation some servers lack; filter here in any case.
        mine = [e for e in self.namespace_events(ns) if any(is_about(e, obj) for obj in objects)]
        return sorted(mine, key=event_time)

    def namespace_events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every core/v1 Event of the namespace, as the server returns them."""
        result = self._call(self.core.list_namespaced_event, namespace or self.namespace, _preload_content=False)
        return json.loads(result.data or b"{}").get("items") or []

    def trainer_pods(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The trainer pods of a job, rank 0 first and newest first within a rank."""
        ns = namespace or self.namespace
        obj = self.get(name, ns)
        job_name = (obj.get("status") or {}).get("jobName") or f"{name}-trainer"
        pods: list[dict[str, Any]] = []
        # The operator labels its pods align.dev/job=<name>; pods made some other way (an older operator, a
        # hand-made Job) are found through the Job controller's labels and owner references instead.
        for selector in (f"{JOB_LABEL}={name}", None):
            extra = {"label_selector": selector} if selector else {}
            result = self._call(self.core.list_namespaced_pod, ns, _preload_content=False, **extra)
            items = json.loads(result.data or b"{}").get("items") or []
            pods = [p for p in items if _belongs(p, name, job_name)]  # selectors are optional for servers
            if pods:
                break

        def order(pod: dict[str, Any]) -> tuple[int, float]:
            meta = pod.get("metadata") or {}
            index = (meta.get("annotations") or {}).get(COMPLETION_INDEX) or (meta.get("labels") or {}).get(COMPLETION_INDEX)
            return int(index) if str(index).isdigit() else 0, -timestamp(meta.get("creationTimestamp"))

        return sorted(pods, key=order)

    def logs(self, pod: str, namespace: str | None = None, *, container: str | None = None, follow: bool = False,
             tail: int | None = None, previous: bool = False) -> Iterator[str]:
        """Log lines of one pod, streamed as they arrive when `follow` is set."""
        # A followed log may be quiet for a long time: no read timeout then.
        extra: dict[str, Any] = {"follow": follow, "_preload_content": False,
                                 "_request_timeout": None if follow else self.request_timeout}
        if container:
            extra["container"] = container
        if tail is not None:
            extra["tail_lines"] = tail
        if previous:
            extra["previous"] = True
        resp = self._call(self.core.read_namespaced_pod_log, pod, namespace or self.namespace, **extra)
        buffer = b""
        try:
            for chunk in resp.stream(4096, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if buffer:
                yield buffer.decode("utf-8", "replace")
        finally:
            resp.release_conn()

    # --- watching ------------------------------------------------------------------------------

    def watch(self, name: str, namespace: str | None = None, *, timeout: float | None = None,
              poll: float = 2.0) -> Iterator[dict[str, Any]]:
        """Yield the object each time it changes (first its current state) until `timeout` seconds pass.

        Uses a watch; reconnects when the stream ends and falls back to polling where watches are refused.
        Raises JobNotFound when the job is (or gets) deleted.
        """
        from kubernetes import watch as k8s_watch
        from urllib3.exceptions import HTTPError

        ns = namespace or self.namespace
        deadline = None if timeout is None else time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            current = self.get(name, ns)
            if current != last:
                last = current
                yield current
            remaining = 300.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return
            window = max(1.0, min(remaining, 60.0))
            stream = k8s_watch.Watch()
            try:
                for event in stream.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL,
                                           field_selector=f"metadata.name={name}", timeout_seconds=int(window),
                                           _request_timeout=window):
                    obj = event.get("object") or {}
                    if (obj.get("metadata") or {}).get("name") != name:
                        continue
                    if event.get("type") == "DELETED":
                        raise JobNotFound(f'alignmentjob "{name}" was deleted', 404)
                    if event.get("type") in ("ADDED", "MODIFIED") and obj != last:
                        last = obj
                        yield obj
                    if deadline is not None and time.monotonic() >= deadline:
                        return
            except HTTPError:
                pass  # read timeout: the window ended quietly; reconnect with a fresh get
            except Exception as exc:  # noqa: BLE001 - a server without watch support: poll instead
                if isinstance(exc, JobNotFound):
                    raise
                time.sleep(min(poll, max(0.0, remaining)))
            finally:
                stream.stop()

    def wait(self, name: str, namespace: str | None = None, *, timeout: float | None = None,
             phases: Iterable[str] = tuple(p.value for p in TERMINAL_PHASES)) -> dict[str, Any]:
        """Block until the job reaches one of `phases` (default Succeeded or Failed); TimeoutError otherwise."""
        wanted = set(phases)
        for obj in self.watch(name, namespace, timeout=timeout):
            if phase_of(obj) in wanted:
                return obj
        raise TimeoutError(f'alignmentjob "{name}" did not reach {"/".join(sorted(wanted))} within {timeout}s')


def _belongs(pod: Mapping[str, Any], name: str, job_name: str) -> bool:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if any(labels.get(key) == job_name for key in POD_JOB_LABELS):
        return True
    if labels.get(JOB_LABEL) == name:
        return True
    return any(ref.get("kind") == "Job" and ref.get("name") == job_name for ref in meta.get("ownerReferences") or [])
