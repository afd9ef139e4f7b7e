"""`alignctl local up --real`: the real control plane (scripts/realk8s.sh), the CRD, the operator and a node agent
in the background; kubectl applies an example and the operator makes its Job on the real server.

The HTTP node agent (`python -m align_localcluster.nodeagent`) is not in this build yet; a stand-in process takes its
place, so this shows everything of the real mode up to running the pods (they stay Pending: no kubelet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from align_localcluster import localplane
from tests.realk8s import HOME, missing_binaries, port_base

pytestmark = [pytest.mark.realk8s, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_local_up_real_serves_kubectl_and_the_operator(tmp_path: Path, worker_id: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if missing_binaries():
        pytest.fail(f"real control plane not built under {HOME}/bin: run scripts/realk8s.sh build", pytrace=False)
    monkeypatch.setenv("REALK8S_HOME", str(HOME))
    monkeypatch.setattr(localplane, "node_agent_available", lambda: True)
    monkeypatch.setattr(localplane, "node_agent_command",
                        lambda kubeconfig, workdir: [sys.executable, "-c", "import time; time.sleep(600)"])
    home = tmp_path / "home"
    base = port_base(worker_id)  # a range whose ports are free now (the fixture's instance, if any, holds another)
    state = localplane.up(home, mode="real", cwd=REPO / "examples", port_base=base)
    try:
        assert state.mode == "real" and state.server == f"https://127.0.0.1:{base + 443}"
        report = localplane.status(home)
        assert report["running"] and report["api"], report
        assert set(report["processes"]) == {"operator", "node agent"}
        assert "apiserver: running" in report["control plane"] and "kcm: running" in report["control plane"]

        env = {**os.environ, "KUBECONFIG": state.kubeconfig}
        applied = subprocess.run(["kubectl", "apply", "-f", str(REPO / "examples" / "dpo.yaml")], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert applied.returncode == 0, applied.stderr
        deadline = time.monotonic() + 90
        while True:
            got = subprocess.run(["kubectl", "get", "jobs", "-o", "json"], env=env, capture_output=True, text=True,
                                 timeout=60)
            names = [j["metadata"]["name"] for j in json.loads(got.stdout or "{}").get("items", [])]
            if "dpo-tiny-trainer" in names:
                break
            assert time.monotonic() < deadline, f"the operator made no Job on the real server: {names}"
            time.sleep(1)
    finally:
        localplane.down(home)
    assert not localplane.status(home)["running"]
    assert not any(localplane.alive(pid) for pid in state.processes.values())
    stopped = localplane._realk8s("status", Path(str(state.realk8s_state)), 0)
    assert "apiserver: stopped" in stopped and "etcd: stopped" in stopped, stopped
