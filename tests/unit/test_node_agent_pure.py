"""The node agent's pure parts: the Node it registers, which pods it binds, log selection."""

from __future__ import annotations

from typing import Any

from align_operator.sandbox.logserver import select
from align_operator.sandbox.nodeagent import GPU, node_object, unschedulable, wants_binding


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
