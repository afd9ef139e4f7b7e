"""End to end: `alignctl local run` trains the DPO example on builtin://tiny through the operator and the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from align_operator.cli.local_cmd import absolutize

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def test_alignctl_local_run_dpo_example_succeeds(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "examples" / "dpo.yaml").read_text())
    # The example as a user runs it, with fewer steps to keep the suite quick; the copy lives elsewhere, so its
    # relative data paths are made absolute the way `alignctl local run` does it for the original.
    doc["spec"] = absolutize(doc["spec"], REPO / "examples")
    doc["spec"]["hyperparameters"]["maxSteps"] = 4
    manifest = tmp_path / "dpo.yaml"
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))
    workdir = tmp_path / "sandbox"
    result = subprocess.run(
        [sys.executable, "-c", "from align_operator.cli import main; main()", "local", "run", str(manifest),
         "-o", "json", "--quiet", "--workdir", str(workdir), "--timeout", "600"],
        capture_output=True, text=True, timeout=660, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    job = json.loads(result.stdout)
    status = job["status"]
    assert status["phase"] == "Succeeded"
    assert status["progress"]["percent"] == 100.0 and status["progress"]["totalSteps"] == 4
    assert "loss" in status["metrics"]
    adapters = list(workdir.glob("pods/default/dpo-tiny-trainer-*/volumes/work/output/final"))
    assert adapters and any(adapters[0].glob("adapter_model.safetensors")), adapters
