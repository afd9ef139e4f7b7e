"""A job that does not evaluate never imports the evaluation runner (a fixed cost in every run; issue 15's
trainer overhead budget). Runs the entry point's steps before the model (manifest, algorithm module,
preflight, evaluation hook) in a fresh interpreter and reads its sys.modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data" / "preference.openai.jsonl"
#: What `plan` saves a non-evaluating job from importing (the runner and what only it needs).
DEFERRED = ("align_trainer.evaluation.runner", "align_trainer.evaluation.hook", "align_trainer.evaluation.generate",
            "align_trainer.evaluation.scoring", "align_trainer.evaluation.outputs",
            "align_trainer.evaluation.report", "align_trainer.evaluation.charts", "matplotlib",
            # iterative rounds only (hyperparameters.rounds): sampling, grading, round bookkeeping
            "align_trainer.preference_rounds", "align_trainer.online")

CHILD = '''
import json, sys
from pathlib import Path
from types import SimpleNamespace
from align_trainer import main, preflight
config, out = Path(sys.argv[1]), Path(sys.argv[2])
job = main.load_job(config)
module = main.load_algorithm(job.spec.algorithm.value)
preflight.run(job, base_dir=config.parent, output_dir=out, kind=main.data_kind(module, job.spec), manifest=config,
              upload=False)
hook = main.evaluation_hook(SimpleNamespace(spec=job.spec))
print(json.dumps({"hook": getattr(hook, "__name__", None), "modules": sorted(sys.modules)}))
'''


def _startup(tmp_path: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "imports"},
           "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"},
                    "data": {"train": {"uri": str(DATA), "format": "openai-preference"}},
                    "resources": {"gpusPerNode": 0}, "evaluation": evaluation}}
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(doc))
    done = subprocess.run([sys.executable, "-c", CHILD, str(config), str(tmp_path / "out")], capture_output=True,
                          text=True, env={**os.environ, "ALIGN_LOG_LEVEL": "WARNING"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_dpo_job_without_evaluation_does_not_import_the_runner(tmp_path: Path) -> None:
    child = _startup(tmp_path, {"enabled": False})
    assert child["hook"] is None
    assert [m for m in DEFERRED if m in child["modules"]] == []


def test_an_evaluating_job_gets_the_runner_hook(tmp_path: Path) -> None:
    """The control: the same startup with evaluation on does import the runner and returns its hook."""
    grader = {"type": "string_check", "name": "has_yes", "input": "{{sample.output_text}}", "reference": "yes",
              "operation": "like"}
    child = _startup(tmp_path, {"enabled": True, "grader": grader})
    assert child["hook"] == "after_training"
    assert "align_trainer.evaluation.runner" in child["modules"]
