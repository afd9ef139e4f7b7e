"""The node agent over HTTP against the emulated API server: binding, ConfigMaps and Secrets read over the API,
logs through the API server's pods/log (proxied to the agent's log endpoint), placement among nodes, final
status. (Graceful deletion needs a real server: tests/real/test_operator_real.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from align_localcluster import LocalCluster

pytestmark = [pytest.mark.integration]

PRINTER = "import os, sys, time\n" \
          "print('config:', open(sys.argv[2]).read(), 'secret:', os.environ['TOKEN'], flush=True)\n" \
          "for i in range(int(sys.argv[1])):\n    print('tick', i, flush=True); time.sleep(0.1)\n" \
          "open(os.environ['ALIGN_TERMINATION_LOG'], 'w').write('all done')\n"


def pod(name: str, ticks: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": "local", "command": ["python", "-c", PRINTER, str(ticks),
                                                                    "/etc/demo/greeting"],
                        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "demo", "key": "token"}}}],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/demo"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "demo"}}], **spec}}


@pytest.fixture()
def sb(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, operator="none", gpus=0) as box:
        box.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "demo"}, "data": {"greeting": "hi"}})
        box.create_secret("demo", {"token": "s3cret"})
        yield box


def test_a_pod_is_bound_run_and_reported_and_its_logs_come_through_the_api(sb: LocalCluster) -> None:
    node = sb.get("local", kind="Node")
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "0"
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == sb.agent.log_port
    sb.apply(pod("printer", ticks=3))
    done = sb.wait_for(lambda: (p := sb.get("printer", kind="Pod")) and (p.get("status") or {}).get("phase") == "Succeeded" and p,
                       timeout=60)
    assert done["spec"]["nodeName"] == "local"                       # bound through pods/binding
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["message"] == "all done"
    text = sb.logs("printer")                                          # API server -> node log endpoint
    assert "config: hi secret: s3cret" in text and "tick 2" in text
    assert sb._request("GET", "/api/v1/namespaces/default/pods/printer/log", params={"tailLines": "1"}).text \
        == "tick 2\n"


def test_follow_streams_until_the_process_ends(sb: LocalCluster) -> None:
    sb.apply(pod("follower", ticks=15))
    sb.wait_for(lambda: (p := sb.get("follower", kind="Pod")) and (p.get("status") or {}).get("phase") == "Running", timeout=30)
    with httpx.stream("GET", f"{sb.url}/api/v1/namespaces/default/pods/follower/log", params={"follow": "true"},
                      timeout=60) as response:
        body = "".join(response.iter_text())
    assert [line for line in body.splitlines() if line.startswith("tick")] == [f"tick {i}" for i in range(15)]


def test_a_pod_that_fits_no_node_is_named_unschedulable(sb: LocalCluster) -> None:
    gpu = pod("greedy", ticks=1)
    gpu["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 2}}
    sb.apply(gpu)
    cond = sb.wait_for(lambda: next((c for c in ((sb.get("greedy", kind="Pod") or {}).get("status") or {}).get(
        "conditions") or [] if c["type"] == "PodScheduled" and c["status"] == "False"), None), timeout=30)
    assert cond["reason"] == "Unschedulable" and "Insufficient nvidia.com/gpu" in cond["message"]
    assert not sb.get("greedy", kind="Pod")["spec"].get("nodeName")


def test_stopping_the_agent_reports_a_final_status(sb: LocalCluster) -> None:
    sb.apply(pod("sleeper", ticks=600))
    sb.wait_for(lambda: (p := sb.get("sleeper", kind="Pod")) and (p.get("status") or {}).get("phase") == "Running", timeout=30)
    sb.call(sb.agent.stop())
    final = sb.get("sleeper", kind="Pod")["status"]
    assert final["phase"] == "Failed" and final["reason"] == "Terminated", final
    assert final["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 143   # SIGTERM, within its grace
    ready = {c["type"]: c for c in sb.get("local", kind="Node")["status"]["conditions"]}["Ready"]
    assert ready["status"] == "False"


def test_a_pod_is_left_to_the_node_it_fits(sb: LocalCluster) -> None:
    from align_localcluster.kube import Client, connection_from_kubeconfig
    from align_localcluster.nodeagent import NodeAgent

    async def second_node() -> NodeAgent:  # Ready and fitting, but not binding yet
        agent = NodeAgent(Client(connection_from_kubeconfig(sb.kubeconfig)), sb.workdir / "pool-b", name="pool-b",
                          labels={"pool": "b"}, bind=False, resync_seconds=0.2)
        await agent.start()
        return agent
    other = sb.call(second_node())
    try:
        sb.apply(pod("picky", ticks=1, nodeSelector={"pool": "b"}))
        time.sleep(1.5)  # several passes of the local cluster's agent, which this pod does not fit
        picky = sb.get("picky", kind="Pod")
        assert not (picky.get("status") or {}).get("conditions"), picky["status"]   # no Unschedulable: b fits
        other.bind = True
        done = sb.wait_for(lambda: (p := sb.get("picky", kind="Pod")) and (p.get("status") or {}).get("phase")
                           == "Succeeded" and p, timeout=30)
        assert done["spec"]["nodeName"] == "pool-b"
    finally:
        sb.call(other.stop())
        sb.call(other.client.close())


def test_a_restarted_agent_stops_and_fails_the_pods_it_cannot_follow(sb: LocalCluster) -> None:
    from align_localcluster.kube import Client, connection_from_kubeconfig
    from align_localcluster.nodeagent import NodeAgent

    sb.apply(pod("orphan", ticks=600))
    sb.wait_for(lambda: (p := sb.get("orphan", kind="Pod")) and (p.get("status") or {}).get("phase") == "Running",
                timeout=30)
    pid = int((sb.workdir / "pods" / "default" / "orphan" / "pid").read_text())
    # A crash: the agent's tasks end, its process keeps running, nothing is reported.
    for task in [*sb.agent._tasks, *(c.waiter for c in sb.agent.kubelet.containers.values() if c.waiter)]:
        task.cancel()
    sb.agent.kubelet.containers.clear()
    sb.call(sb.agent.client.close())  # its connections die with it (a watch left open would delay the teardown)

    async def restart() -> NodeAgent:
        agent = NodeAgent(Client(connection_from_kubeconfig(sb.kubeconfig)), sb.workdir, name="local",
                          resync_seconds=0.2)
        await agent.start()
        return agent
    again = sb.call(restart())
    try:
        failed = sb.wait_for(lambda: (p := sb.get("orphan", kind="Pod")) and p["status"]["phase"] == "Failed" and p,
                             timeout=30)
        assert failed["status"]["reason"] == "NodeAgentRestarted"
        assert failed["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
        sb.wait_for(lambda: not _alive(pid), timeout=10)
    finally:
        sb.call(again.stop())
        sb.call(again.client.close())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
