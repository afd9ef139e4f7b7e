"""What the emulated API server does for nodes, as kube-apiserver does: `pods/{name}/binding` (what a scheduler
posts) sets a pod's node, once; `pods/{name}/log` is proxied to the kubelet log endpoint of the pod's node
(`status.daemonEndpoints.kubeletEndpoint.Port` on its InternalIP, HTTPS, certificate not verified), streaming
included, so the node agent serves logs the same way on every server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import aiohttp.web
import attrs
import kmock


if TYPE_CHECKING:
    from .apiserver import ClusterEmulator


def binding_update(emulator: "ClusterEmulator", request: kmock.Request) -> kmock.Request:
    """POST pods/{name}/binding: an update that sets spec.nodeName, once (409 if the pod has a node)."""
    pod = attrs.evolve(request, subresource=None, action=kmock.action.UPDATE)
    current = emulator._current(pod)
    if current is None:
        raise kmock.KubernetesObjectNotFoundError()
    node = ((request.data or {}).get("target") or {}).get("name") if isinstance(request.data, dict) else None
    if not node:
        raise kmock.KubernetesError(status=422, reason="Invalid", message="target.name: Required value")
    if (current.get("spec") or {}).get("nodeName"):
        raise kmock.KubernetesError(status=409, reason="Conflict", message=f'pod {request.name} is already '
                                    f'assigned to node "{current["spec"]["nodeName"]}"')
    return attrs.evolve(pod, data={"spec": {"nodeName": node}})


async def proxy_log(emulator: "ClusterEmulator", request: kmock.Request) -> aiohttp.web.StreamResponse:
    """Proxy to the kubelet log endpoint of the pod's node, streaming (follow) included."""
    pod = emulator.get_object("v1/pods", request.namespace or "default", request.name or "")
    if pod is None:
        raise kmock.KubernetesObjectNotFoundError()
    node_name = (pod.get("spec") or {}).get("nodeName")
    node = emulator.get_object("v1/nodes", None, node_name) if node_name else None
    if node is None:
        raise kmock.KubernetesError(status=400, reason="BadRequest",
                                    message=f'pod {request.name} does not have a host assigned')
    status = node.get("status") or {}
    address = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"),
                   "127.0.0.1")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port", 10250)
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    container = request.params.get("container") or (containers[0] if containers else "main")
    url = f"https://{address}:{port}/containerLogs/{request.namespace}/{request.name}/{container}"
    params = {k: v for k, v in request.params.items() if k in ("tailLines", "limitBytes", "follow")}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(url, params=params, ssl=False) as upstream:
                if upstream.status != 200:
                    raise kmock.KubernetesError(status=upstream.status, reason="NotFound" if upstream.status == 404
                                                else "InternalError", message=await upstream.text())
                response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
                await response.prepare(request._raw_request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientConnectionError as exc:
            raise kmock.KubernetesError(status=502, reason="BadGateway",
                                        message=f"node {node_name} log endpoint: {exc}") from None
