"""End to end: `alignctl local run examples/dpo.yaml` trains on builtin://tiny through the operator and the local cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def test_alignctl_local_run_dpo_example_succeeds(tmp_path: Path) -> None:
    workdir = tmp_path / "local"
    result = subprocess.run(
        [sys.executable, "-c", "from align_operator.cli import main; main()", "local", "run",
         str(REPO / "examples" / "dpo.yaml"), "-o", "json", "--quiet", "--workdir", str(workdir), "--timeout", "600"],
        capture_output=True, text=True, timeout=660, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    status = json.loads(result.stdout)["status"]
    assert status["phase"] == "Succeeded"
    assert status["progress"]["percent"] == 100.0 and status["progress"]["step"] == status["progress"]["totalSteps"]
    assert "loss" in status["metrics"] and "rewards_accuracies" in status["metrics"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True" and conditions["Succeeded"]["observedGeneration"] == 1
    adapters = list(workdir.glob("pods/default/dpo-tiny-trainer-*/volumes/work/output/final"))
    assert adapters and any(adapters[0].glob("adapter_model.safetensors")), adapters
