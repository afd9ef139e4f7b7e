"""Promote re-runs the job's evaluation gates on the promoted checkpoint (align_trainer/promote.py), on the DPO
"yes over no" task of test_evaluation_dpo.py: a gate that passes is recorded with the promotion (and the model
card's evaluation section); a gate that fails leaves the published adapter exactly as it was (staged, never
renamed into place) and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from align_api.constants import ExitCode, Reason

from .test_evaluation_dpo import manifest, write_task

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


def with_gates(config: Path, gates: list[str], name: str) -> Path:
    doc = yaml.safe_load(config.read_text())
    doc["spec"]["evaluation"]["gates"] = gates
    doc["spec"]["checkpoints"] = {"everySteps": 10, "keep": 2, "volume": "ckpt"}
    path = config.with_name(name)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_promote_reruns_the_gates_and_a_failed_gate_publishes_nothing(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from align_trainer.main import run
    from align_trainer.promote import run as promote
    write_task(tmp_path, flipped=False)
    published = tmp_path / "published"
    out, log = tmp_path / "out", tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(out))     # not --output: uploading to spec.output.uri stays on
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(log))
    config = with_gates(manifest(tmp_path, "gated", published), ["winRate >= 0.55"], "job.yaml")
    assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    final = {p.name: p.read_bytes() for p in (out / "final").iterdir()}
    uploaded = (published / "adapter" / "adapter_model.safetensors").read_bytes()

    # a gate no model can pass: the promotion fails, final/ and the upload stay the step-20 adapter
    impossible = with_gates(config, ["winRate >= 1.5"], "impossible.yaml")
    assert promote(["--config", str(impossible), "--step", "10"]) == ExitCode.EVALUATION_GATE_FAILED
    assert log.read_text().startswith(f"{Reason.EVALUATION_GATE_FAILED}: evaluation gate failed: winRate >= 1.5")
    assert {p.name: p.read_bytes() for p in (out / "final").iterdir()} == final
    assert (published / "adapter" / "adapter_model.safetensors").read_bytes() == uploaded
    assert "step 10" in (out / "gate-failed" / "README.md").read_text()   # the rejected one, kept aside
    assert not list(out.glob(".staging-*"))

    # the job's gate on step 10: re-run, recorded, published (uploaded too), the card naming the step
    assert promote(["--config", str(config), "--step", "10"]) == ExitCode.OK
    record = json.loads(log.read_text())["promoted"]
    assert record["step"] == 10 and record["gates"][0].startswith("winRate >= 0.55: passed")
    assert record["evaluation"]["winRate"] >= 0.55 and record["adapter"].endswith("adapter")
    card = (published / "adapter" / "README.md").read_text()
    assert "Promoted checkpoint: step 10" in card and "## Evaluation" in card
    assert (published / "adapter" / "adapter_model.safetensors").read_bytes() != uploaded
