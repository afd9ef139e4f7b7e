"""What the local cluster needs of a Kubernetes client beyond the operator's (align_operator.kube).

The node agent lists and watches pods, and the local cluster writes a kubeconfig for its unauthenticated API
server; the operator does neither, so these live here rather than in the operator's image.
"""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import yaml

from align_operator.kube import (CONFIGMAPS, JOBS, SERVICES, ApiError, Client as OperatorClient, NotFound,
                                 Resource, _error, connection_from_kubeconfig)

__all__ = ["CONFIGMAPS", "JOBS", "NAMESPACES", "PODS", "SECRETS", "SERVICES", "ApiError", "Client", "NotFound",
           "Resource", "connection_from_kubeconfig", "http_client", "write_kubeconfig"]

SECRETS = Resource("v1", "secrets")
PODS = Resource("v1", "pods")
NAMESPACES = Resource("v1", "namespaces", namespaced=False)


class Client(OperatorClient):
    """The operator's client plus the lists and the watch stream the node agent reads pods and nodes with."""

    async def list(self, resource: Resource, namespace: str | None = None,
                   label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", resource.url(namespace), params=params)
        return list(result.get("items", []))

    async def list_with_version(self, resource: Resource, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """The items and the list's resourceVersion (where a watch continues from)."""
        result = await self.request("GET", resource.url(namespace))
        return list(result.get("items", [])), str((result.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(self, resource: Resource, resource_version: str, namespace: str | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[dict[str, Any]]:
        """Watch events ({"type", "object"}) after `resource_version` until the server ends the stream.
        An ERROR event (410 Gone: the version is too old) is raised as ApiError; the caller lists again."""
        params = {"watch": "true", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout_seconds)}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30)
        async with self.session.get(resource.url(namespace).lstrip("/"), params=params, timeout=timeout) as response:
            if response.status >= 400:
                raise _error(response.status, await response.text())
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise _error(int(status.get("code") or 500), json.dumps(status))
                yield event


def write_kubeconfig(path: str | os.PathLike[str], server: str, namespace: str = "default",
                     name: str = "align-local") -> Path:
    """A kubeconfig for an unauthenticated local server (the emulated API server)."""
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def http_client(kubeconfig: str | os.PathLike[str]) -> Any:
    """A synchronous httpx.Client for the server of `kubeconfig` (its CA, its bearer token), for one-off calls."""
    import httpx

    info = connection_from_kubeconfig(kubeconfig)
    headers = {"Authorization": f"Bearer {info.token}"} if info.token else {}
    verify = ssl.create_default_context(cafile=info.ca_path) if info.ca_path else True
    return httpx.Client(base_url=info.server, verify=verify, headers=headers, timeout=30)
