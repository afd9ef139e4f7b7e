"""`alignctl local run` keeps a run inside its --workdir: a second run of the same manifest (same job name)
in another work directory starts fresh instead of resuming the first run's checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]


def local_run(manifest: Path, workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from align_operator.cli import main; main()", "local", "run", str(manifest),
         "-o", "json", "--workdir", str(workdir), "--timeout", "600"],
        capture_output=True, text=True, timeout=660, cwd=manifest.parent)


def test_same_job_in_another_workdir_starts_fresh(tmp_path: Path) -> None:
    shutil.copy(REPO / "examples" / "data" / "sft.openai.jsonl", tmp_path / "train.jsonl")
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "same-name"},
        "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "train.jsonl"}},
                 "hyperparameters": {"maxSteps": 2, "batchSize": 4}, "resources": {"gpusPerNode": 0},
                 "checkpoints": {"everySteps": 1}, "output": {"uri": f"file://{tmp_path / 'published'}"}}}))
    for workdir in (tmp_path / "first", tmp_path / "second"):
        result = local_run(manifest, workdir)
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout)["status"]["phase"] == "Succeeded"
        logs = list(workdir.glob("pods/default/same-name-trainer-*/log.txt"))
        assert logs and "resuming" not in logs[0].read_text()
        outputs = list(workdir.glob("pods/default/same-name-trainer-*/volumes/work/output"))
        assert outputs and (outputs[0] / "checkpoints" / "checkpoint-2").is_dir()  # checkpoints stay in the workdir
        assert "output " + str(outputs[0]) in result.stderr  # and the run says where they are
    assert not (tmp_path / "runs").exists()  # nothing written next to the manifest
    assert (tmp_path / "published" / "adapter" / "adapter_model.safetensors").exists()
