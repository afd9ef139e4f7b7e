"""`alignctl local up --real`: the real control plane (scripts/realk8s.sh), the CRD, the operator with its admission
webhook registered as the chart registers it, and a node agent in the background; kubectl applies an example and
the operator makes its Job on the real server, and every invalid manifest of ours is refused at `kubectl apply`.

A stand-in process takes the node agent's place (pods are run by the node agent in tests/real/test_operator_real.py),
so this shows everything of the real mode up to running the pods (they stay Pending: no kubelet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from align_localcluster import localplane
from align_operator.cli.validate_cmd import validate_paths
from tests.real.parity_corpus import WEBHOOK_DENIED, invalid_manifests, refused_at_apply
from tests.realk8s import HOME, missing_binaries, port_base

pytestmark = [pytest.mark.realk8s, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
#: Refused on a cluster of today, not on 1.20: an unknown field is pruned by 1.20 before admission (the webhook sees
#: the object without it), while 1.25+ servers refuse it (fieldValidation=Strict, kubectl's default; shown on the
#: 1.36 CRD server by tests/real/test_validation_parity.py). What 1.20 stores is the manifest without the field.
PRUNED_BY_1_20 = {"invalid-grader-unknown-key": ("grader", "pass_treshold")}


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

        # The chart's admission webhook: what alignctl refuses, kubectl apply refuses on this plane too.
        assert report["webhook"] and report["webhook"].startswith(f"https://127.0.0.1:{base + 643}/"), report
        files = invalid_manifests(tmp_path / "invalid")
        assert len(files) >= 60, len(files)
        refused = refused_at_apply(env, files)
        assert set(files) - set(refused) == set(PRUNED_BY_1_20)  # none else accepted
        for case, (parent, field) in PRUNED_BY_1_20.items():
            got = subprocess.run(["kubectl", "get", "alignmentjob", case, "-o", "json"], env=env, capture_output=True,
                                 text=True, timeout=60, check=True)
            assert field not in json.loads(got.stdout)["spec"][parent]
        for case in ("invalid-python-does-not-compile", "invalid-grpo-without-grader", "invalid-output-scheme",
                     "invalid-name-of-70-characters"):  # the schema lets these through; the webhook does not
            assert WEBHOOK_DENIED in refused[case], (case, refused[case])
            assert validate_paths([files[case]])[1][0].split(": ", 1)[1] in refused[case]  # alignctl's words
        by_webhook = sum(WEBHOOK_DENIED in error for error in refused.values())
        print(f"local up --real: {len(files)} invalid manifests, {len(refused)} refused at kubectl apply, "
              f"{by_webhook} by the admission webhook")
    finally:
        localplane.down(home)
    assert not localplane.status(home)["running"]
    assert not any(localplane.alive(pid) for pid in state.processes.values())
    stopped = localplane._realk8s("status", Path(str(state.realk8s_state)), 0)
    assert "apiserver: stopped" in stopped and "etcd: stopped" in stopped, stopped
