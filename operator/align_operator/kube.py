"""A small asyncio Kubernetes client: the few verbs the operator needs, with retries.

Kopf brings its own client for watching and patching the resources it serves; children (ConfigMap,
Service, Job), status of upstream jobs and metrics scraping go through this one. It takes the same
`kopf.ConnectionInfo` Kopf logs in with, so both talk to the same server with the same credentials.

Retries: 429 and 5xx answers and connection errors are retried with exponential backoff and jitter
(honouring Retry-After), up to `retries` times; 409 on create is the caller's to tolerate (`create_or_get`).
The local cluster extends it (align_localcluster.kube) with the list-and-watch its node agent needs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import aiohttp
import kopf
import yaml

RETRYABLE = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """A Kubernetes API error answer."""

    def __init__(self, status: int, reason: str = "", message: str = ""):
        self.status, self.reason, self.message = status, reason, message
        super().__init__(f"{status} {reason}: {message}".strip())


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


@dataclass(frozen=True)
class Resource:
    """A resource kind as the API addresses it."""

    api_version: str  # "v1", "batch/v1", "align.dev/v1alpha1"
    plural: str
    namespaced: bool = True

    def url(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


CONFIGMAPS = Resource("v1", "configmaps")
SERVICES = Resource("v1", "services")
JOBS = Resource("batch/v1", "jobs")


# --------------------------------------------------------------------------- credentials
def connection_from_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> kopf.ConnectionInfo:
    """Read one context of a kubeconfig file (server, CA, token or client certificate)."""
    config = yaml.safe_load(Path(path).read_text()) or {}
    context_name = context or config.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in config.get("contexts", [])}
    ctx = contexts.get(context_name) or (next(iter(contexts.values())) if contexts else {})
    clusters = {c["name"]: c.get("cluster", {}) for c in config.get("clusters", [])}
    users = {u["name"]: u.get("user", {}) for u in config.get("users", [])}
    cluster = clusters.get(ctx.get("cluster"), {})
    user = users.get(ctx.get("user"), {}) or {}
    base = Path(path).parent

    def _path(value: str | None) -> str | None:
        return str((base / value).resolve()) if value else None

    return kopf.ConnectionInfo(
        server=cluster.get("server", "http://127.0.0.1:8080"),
        ca_path=_path(cluster.get("certificate-authority")),
        ca_data=base64.b64decode(cluster["certificate-authority-data"]) if cluster.get("certificate-authority-data") else None,
        insecure=cluster.get("insecure-skip-tls-verify"),
        token=user.get("token"),
        scheme="Bearer" if user.get("token") else None,
        username=user.get("username"),
        password=user.get("password"),
        certificate_path=_path(user.get("client-certificate")),
        certificate_data=base64.b64decode(user["client-certificate-data"]) if user.get("client-certificate-data") else None,
        private_key_path=_path(user.get("client-key")),
        private_key_data=base64.b64decode(user["client-key-data"]) if user.get("client-key-data") else None,
        default_namespace=ctx.get("namespace"),
    )


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        return False
    ctx = ssl.create_default_context(cafile=str(info.ca_path) if info.ca_path else None,
                                     cadata=_text(info.ca_data) if info.ca_data else None)
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data:  # ssl wants files for client certificates
        cert = _temp_file(info.certificate_data)
    if info.private_key_data:
        key = _temp_file(info.private_key_data)
    if cert:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    return ctx


def _text(data: str | bytes) -> str:
    return data.decode() if isinstance(data, bytes) else data


def _temp_file(data: str | bytes) -> str:
    handle = tempfile.NamedTemporaryFile(delete=False, prefix="align-kube-")
    handle.write(data if isinstance(data, bytes) else data.encode())
    handle.close()
    return handle.name


# --------------------------------------------------------------------------- client
class Client:
    """CRUD on Kubernetes objects over one aiohttp session, with retries on 429/5xx/connection errors."""

    def __init__(self, info: kopf.ConnectionInfo, *, retries: int = 8, backoff: float = 0.2,
                 max_backoff: float = 10.0, timeout: float = 30.0, connections: int = 16):
        self.info = info
        self.connections = connections
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "application/json"}
            auth = None
            if self.info.token:
                headers["Authorization"] = f"{self.info.scheme or 'Bearer'} {self.info.token}"
            elif self.info.username and self.info.password:
                auth = aiohttp.BasicAuth(self.info.username, self.info.password)
            self._session = aiohttp.ClientSession(
                base_url=self.info.server.rstrip("/") + "/", headers=headers, auth=auth, timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=_ssl_context(self.info), limit=self.connections))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
                      content_type: str = "application/json", raw: bool = False) -> Any:
        """One API call; retried on retryable failures; raises ApiError (NotFound, Conflict) otherwise."""
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        attempt = 0
        while True:
            try:
                async with self.session.request(method, path.lstrip("/"), data=data, params=params,
                                                headers=headers) as response:
                    text = await response.text()
                    if response.status < 400:
                        return text if raw else (json.loads(text) if text else {})
                    error = _error(response.status, text)
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                error, retry_after = ApiError(0, type(exc).__name__, str(exc)), None
            if (error.status not in RETRYABLE and error.status != 0) or attempt >= self.retries:
                raise error
            delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random())
            if retry_after and retry_after.isdigit():
                delay = max(delay, float(retry_after))
            attempt += 1
            await asyncio.sleep(delay)

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self.request("GET", resource.url(namespace, name))

    async def get_or_none(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return await self.get(resource, name, namespace)
        except NotFound:
            return None

    async def create(self, resource: Resource, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        namespace = namespace or body.get("metadata", {}).get("namespace")
        return await self.request("POST", resource.url(namespace), body=body)

    async def create_or_get(self, resource: Resource, body: Mapping[str, Any],
                            namespace: str | None = None) -> tuple[dict[str, Any], bool]:
        """Create, or return the object that already exists under that name: (object, created)."""
        namespace = namespace or body.get("metadata", {}).get("namespace")
        try:
            return await self.create(resource, body, namespace), True
        except Conflict:
            return await self.get(resource, body["metadata"]["name"], namespace), False

    async def patch(self, resource: Resource, name: str, patch: Any, namespace: str | None = None,
                    subresource: str | None = None) -> dict[str, Any]:
        kind = "application/json-patch+json" if isinstance(patch, list) else "application/merge-patch+json"
        return await self.request("PATCH", resource.url(namespace, name, subresource), body=patch, content_type=kind)

    async def delete(self, resource: Resource, name: str, namespace: str | None = None) -> bool:
        """Delete with background propagation; False if it was already gone."""
        try:
            await self.request("DELETE", resource.url(namespace, name),
                               body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
            return True
        except NotFound:
            return False


def _error(status: int, text: str) -> ApiError:
    try:
        doc = json.loads(text)
        reason, message = str(doc.get("reason", "")), str(doc.get("message", ""))
    except ValueError:
        reason, message = "", text[:500]
    cls = NotFound if status == 404 else Conflict if status == 409 else ApiError
    return cls(status, reason, message)
