"""The README's quickstart, through its entry point: the DPO example, unchanged, in the local cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from align_localcluster import quickstart

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_quickstart_trains_evaluates_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "local"
    code = quickstart.run(quickstart.DEFAULT_MANIFEST, workdir)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "phase:     Succeeded" in out and "progress:  step 16/16 (100.0%)" in out
    # status.evaluation and the Evaluated condition came back through the operator
    assert "eval winRate:" in out and "condition: Evaluated=True (EvaluationPassed)" in out

    adapter = Path(out.split("adapter:")[1].split()[0])
    plot = Path(out.split("plot:")[1].split()[0])
    assert (adapter / "adapter_model.safetensors").stat().st_size > 10_000
    assert (adapter / "adapter_config.json").exists() and (adapter / "README.md").exists()
    image = Image.open(plot)
    assert image.size[0] > 600 and len(set(image.convert("L").getdata())) > 10, "a real chart, not a blank image"

    # The example's evaluation ran and its gate held: the policy beats the reference on unseen prompts.
    evaluation = json.loads((adapter.parent / "evaluation.json").read_text())
    assert evaluation["passed"] is True
    assert evaluation["status"]["winRate"] >= 0.6 and evaluation["status"]["rewardDelta"] > 0
