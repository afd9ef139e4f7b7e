"""A real pretrained model through the user's path (issue 22): examples/dpo-smollm2.yaml, unchanged, in the local
sandbox (emulated API server, the real operator, the trainer as a pod process) to Succeeded, with the plot, the
evaluation report and a model card that names the GGUF file. The only real-model e2e: about 3 minutes on 2 cores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align_localcluster import quickstart
from align_trainer import builtin

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

@pytest.mark.timeout(1200)  # 2 min 46 s at load average 3; past the suite's 600 s on a machine loaded 4x over
def test_smollm2_dpo_example_succeeds_in_the_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builtin.packaged_file("smollm2-135m-instruct")  # missing: a ConfigError naming the pip command
    code = quickstart.main(["--real", "--workdir", str(tmp_path / "sandbox")])  # ./scripts/quickstart.sh --real
    out = capsys.readouterr().out
    assert code == 0, out
    assert "phase:     Succeeded" in out and "progress:  step 8/8 (100.0%)" in out
    assert "condition: Evaluated=True (EvaluationPassed)" in out

    adapter = Path(out.split("adapter:")[1].split()[0])
    card = (adapter / "README.md").read_text()
    assert "base_model: \"builtin://smollm2-135m-instruct\"" in card
    assert "GGUF source: `SmolLM2-135M-Instruct.Q4_1.gguf` (sha256 `" in card
    assert Path(out.split("plot:")[1].split()[0]).stat().st_size > 10_000
    assert (adapter.parent / "report.md").stat().st_size > 500
    # the policy learnt the preference on unseen prompts: it opens with "Sure!" where the reference does not
    evaluation = json.loads((adapter.parent / "evaluation.json").read_text())
    assert evaluation["passed"] is True and evaluation["status"]["rewardDelta"] > 0.5
