"""Imported OpenAI requests train exactly as imported on builtin://tiny (only the model replaced), and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from align_api import load_file
from align_operator.cli import _register, app

_register()

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "openai"


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(1200)  # the reinforcement import trains as written: 8 GRPO steps + evaluation (~80 s idle)
@pytest.mark.parametrize("request_file, algorithm", [
    ("supervised.json", "sft"), ("dpo.json", "dpo"),
    ("reinforcement.json", "grpo"),
])
def test_imported_request_trains_on_tiny_model(request_file: str, algorithm: str, tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    imported = CliRunner().invoke(app, ["import", "openai", str(EXAMPLES / request_file), "--model", "builtin://tiny",
                                        "-o", str(manifest)])
    assert imported.exit_code == 0, imported.output
    # As written by the importer (issue 16): nothing shortened, the evaluation included.
    (job,) = load_file(manifest)
    assert job.spec.algorithm == algorithm and job.spec.model.base == "builtin://tiny"

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "align_trainer", "--config", str(manifest), "--output", str(out),
                           "--metrics-port", "-1"], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "final").is_dir()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records)

    plotted = CliRunner().invoke(app, ["plot", str(out)])
    assert plotted.exit_code == 0, plotted.output
    assert (out / "metrics.png").stat().st_size > 10_000
