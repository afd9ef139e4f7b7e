"""bench/gpu_check.sh: what can be checked without a GPU. Its manifests must stay valid AlignmentJobs (a spec
change that broke them would only show on a GPU machine), the step-rate and token figures must be computed
from the right records, and without CUDA it must say so and exit with its own code (3), not pass."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

from align_api import validate_document
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(gpu_check)  # type: ignore[union-attr]


def test_every_feature_is_a_valid_job_on_one_gpu() -> None:
    feats = gpu_check.features(flash=True)
    assert [f["name"] for f in feats] == ["sft-lora-bf16", "sft-qlora-4bit", "dpo-lora-bf16", "dpo-qlora-4bit",
                                          "sft-lora-bf16-flash-attention"]
    for feature in feats:
        job = validate_document(gpu_check.manifest(feature, "file:///models/medium"))
        assert (job.spec.model.quantization is not None) == feature["quantized"]
        assert job.spec.model.attention == feature["attention"] and job.spec.resources.gpus_per_node == 1


def test_medium_model_is_about_half_a_billion_parameters() -> None:
    h, i, n = (gpu_check.MEDIUM[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers"))
    assert 0.4e9 < n * (4 * h * h + 3 * h * i) < 0.6e9


def test_step_rate_skips_startup(tmp_path: Path) -> None:
    rows = [{"time": 100.0, "step": 1, "loss": 1.0}, {"time": 101.0, "step": 2, "loss": 1.0},
            {"time": 103.0, "step": 6, "loss": 1.0}, {"time": 104.0, "step": 6, "train_loss": 1.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert gpu_check.throughput(tmp_path) == 5 / 3
    assert 20 < gpu_check.tokens_per_row("sft") < gpu_check.tokens_per_row("dpo") <= 2 * gpu_check.MAX_LENGTH


def test_without_cuda_it_exits_3_and_says_so() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(REPO / "bench" / "gpu_check.sh")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "no CUDA device" in proc.stdout and proc.stdout.strip().endswith("cuda=absent")
