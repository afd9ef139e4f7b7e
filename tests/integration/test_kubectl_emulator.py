"""kubectl against the emulated API server, as `alignctl local up` users run it: `kubectl apply` finds the OpenAPI
v3 discovery it needs (server-side field validation), short names resolve without warnings, and `kubectl get aj`
prints the CRD's columns."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from align_localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing: the dev extra has it")]


def test_kubectl_apply_and_get_on_the_emulator(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, operator="none", node_agent=False) as sb:
        env = {**os.environ, "KUBECONFIG": str(sb.kubeconfig)}

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, timeout=60)
        first = kubectl("apply", "-f", str(REPO / "examples" / "dpo.yaml"))
        assert first.returncode == 0 and "dpo-tiny created" in first.stdout, first.stderr
        again = kubectl("apply", "-f", str(REPO / "examples" / "dpo.yaml"))
        assert again.returncode == 0 and "dpo-tiny unchanged" in again.stdout, again.stderr
        got = kubectl("get", "aj", "dpo-tiny", "-o", "name")
        assert got.stdout.strip() == "alignmentjob.align.dev/dpo-tiny"
        assert got.stderr == "", got.stderr  # no "short name aj could also match alignmentjobs/status"
        # Printer columns, as a real server renders the CRD's additionalPrinterColumns into a Table.
        sb.patch("dpo-tiny", {"status": {"phase": "Running", "progress": {"percent": 42.5}}}, subresource="status")
        table = kubectl("get", "aj").stdout.splitlines()
        assert table[0].split() == ["NAME", "PHASE", "ALGORITHM", "MODEL", "PROGRESS", "GPU-H", "AGE"], table
        assert table[1].split()[:5] == ["dpo-tiny", "Running", "dpo", "builtin://tiny", "42.5"], table
        stored = sb.get("dpo-tiny")
        assert stored is not None and stored["spec"]["algorithm"] == "dpo"
        assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
