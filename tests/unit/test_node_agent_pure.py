"""The node agent's pure parts: the Node it registers, which pods it binds, log selection."""

from __future__ import annotations

from typing import Any

from align_localcluster.logserver import select
from align_localcluster.nodeagent import GPU, node_object, unschedulable, wants_binding


def _pod(gpus: int = 0, selector: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "x"}
    if gpus:
        container["resources"] = {"limits": {GPU: gpus}}
    return {"metadata": {"name": "p", "namespace": "ns", **meta},
            "spec": {"containers": [container], **({"nodeSelector": selector} if selector else {})}}


def test_the_node_advertises_its_gpus_its_log_port_and_only_an_internal_ip() -> None:
    node = node_object("n1", port=12345, gpus=2, labels={"pool": "a"})
    assert node["status"]["capacity"][GPU] == "2" and node["status"]["allocatable"][GPU] == "2"
    assert node["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 12345}}
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    assert node["metadata"]["labels"]["pool"] == "a" and node["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    assert GPU not in node_object("n2", port=1, gpus=None)["status"]["capacity"]


def test_a_pod_fits_unless_it_wants_more_gpus_or_other_labels() -> None:
    labels = {"pool": "a"}
    assert unschedulable(_pod(), labels, gpus=0) is None
    assert unschedulable(_pod(gpus=1), labels, gpus=None) is None          # GPUs not modelled: anything goes
    assert "Insufficient nvidia.com/gpu (requested 2, node has 1)" in unschedulable(_pod(gpus=2), labels, gpus=1)
    assert unschedulable(_pod(gpus=1), labels, gpus=1) is None
    assert "node affinity/selector" in unschedulable(_pod(selector={"pool": "b"}), labels, gpus=0)
    assert unschedulable(_pod(selector={"pool": "a"}), labels, gpus=0) is None


def test_only_unplaced_pending_pods_are_bound() -> None:
    assert wants_binding(_pod())
    placed = _pod()
    placed["spec"]["nodeName"] = "other"
    assert not wants_binding(placed)
    assert not wants_binding(_pod(deletionTimestamp="2026-01-01T00:00:00Z"))
    finished = _pod()
    finished["status"] = {"phase": "Failed"}
    assert not wants_binding(finished)


def test_log_selection_takes_tail_lines_then_limit_bytes() -> None:
    text = b"a\nb\nc\n"
    assert select(text, None, None) == text
    assert select(text, "2", None) == b"b\nc\n"
    assert select(text, "0", None) == b""
    assert select(text, "2", "3") == b"b\nc"


def test_a_stuck_stage_of_stopping_a_node_is_named_and_passed(caplog: Any) -> None:
    import asyncio
    from types import SimpleNamespace

    from align_localcluster.nodeagent import NodeAgent

    async def stuck() -> None:
        await asyncio.sleep(3600)

    with caplog.at_level("WARNING"):
        asyncio.run(asyncio.wait_for(NodeAgent._bounded(SimpleNamespace(name="n1"), "its log server", stuck(), 0.05), 30))
    assert "node n1: its log server did not finish" in caplog.text


def test_the_log_server_stops_while_a_reader_follows_a_running_pod(tmp_path: Any) -> None:
    """A `kubectl logs -f` stream must not hold a stopping node for aiohttp's default 60 s."""
    import asyncio
    import ssl

    import aiohttp

    from align_localcluster.kubelet import log_path
    from align_localcluster.logserver import LogServer

    path = log_path(tmp_path, "ns", "p")
    path.parent.mkdir(parents=True)
    path.write_text("line 1\n")

    async def scenario() -> bytes:
        server = LogServer(tmp_path, running=lambda ns, pod: True)  # the pod never ends: the stream never closes
        port = await server.start()
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"https://127.0.0.1:{port}/containerLogs/ns/p/main?follow=true", ssl=context)
            first = await response.content.readline()
            await asyncio.wait_for(server.stop(), 20)  # aiohttp's default shutdown_timeout would be 60 s
            response.close()
        return first

    assert asyncio.run(scenario()) == b"line 1\n"
