"""The operator image runs the console as the chart's console Deployment does (`alignctl console`, UID 65532,
read-only root, no capabilities): it serves the pages with the uPlot the image build vendored, and lists the
jobs of the API server it is pointed at."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from align_localcluster import LocalCluster
from align_localcluster.containers import podman_env

pytestmark = [pytest.mark.containers, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_operator_image_serves_the_console(operator_image: str, tmp_path: Path) -> None:
    with LocalCluster(workdir=tmp_path / "sb", operator="none", node_agent=False) as sb:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(sb.kubeconfig.read_text())
        kubeconfig.chmod(0o644)
        sb.apply(REPO / "examples" / "dpo.yaml")
        port = _free_port()
        name = f"align-console-test-{port}"
        argv = ["podman", "run", "--rm", "--name", name, "--network", "host", "--pull", "never", "--read-only",
                "--user", "65532:65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--tmpfs", "/tmp", "--volume", f"{kubeconfig}:/etc/kube/config:ro",
                "--env", "KUBECONFIG=/etc/kube/config", "--entrypoint", "alignctl", operator_image,
                "console", "--address", "127.0.0.1", "--port", str(port), "--all-namespaces"]
        log = (tmp_path / "console.log").open("wb")
        proc = subprocess.Popen(argv, env=podman_env(), stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            out = (tmp_path / "console.log").read_text(errors="replace")[-3000:]
            assert proc.poll() is None, f"the console container exited\n{out}"
            page = httpx.get(f"{base}/", timeout=10)
            assert page.status_code == 200, f"{page.text[:500]}\n{out}"  # 503 = the image shipped no uPlot
            assert httpx.get(f"{base}/static/vendor/uPlot.iife.min.js", timeout=10).status_code == 200
            jobs = httpx.get(f"{base}/api/jobs", timeout=30).json()
            assert [row["name"] for row in jobs["items"]] == ["dpo-tiny"], jobs
        finally:
            subprocess.run(["podman", "stop", "-t", "5", name], env=podman_env(), capture_output=True)
            proc.wait(timeout=60)
