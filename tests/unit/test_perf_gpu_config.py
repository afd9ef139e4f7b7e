"""GPU speed-ups as configuration: vLLM generation (grpo, rloo, online-dpo) and Liger kernels.

They cannot run on this CPU-only machine; what is tested is that the spec accepts them only where they
apply, that the ConfigMap carries them to the trainer, that the trainer maps them onto TRL's own fields
(checked against the real TRL config classes), and that it refuses them without CUDA or the package.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import yaml

from align_api import ManifestError, validate_document
from align_operator.renderers import render_configmap
from align_trainer.accel import speedup_args
from align_trainer.errors import ConfigError

GRADER = {"type": "string_check", "name": "s", "input": "{{sample.output_text}}", "reference": "a",
          "operation": "like"}


def doc(algorithm: str = "grpo", gpus: int = 1, **hp: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"algorithm": algorithm, "model": {"base": "Qwen/Qwen2.5-0.5B-Instruct"},
                            "data": {"train": {"uri": "s3://bucket/prompts.jsonl"}}, "hyperparameters": hp,
                            "resources": {"gpusPerNode": gpus}}
    if algorithm in ("grpo", "rloo", "online-dpo"):
        spec["grader"] = GRADER
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "fast"}, "spec": spec}


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "online-dpo"])
def test_vllm_colocate_reaches_the_trainer_config_and_trl(algorithm: str) -> None:
    job = validate_document(doc(algorithm, vllm="colocate", vllmGpuMemoryUtilization=0.4, ligerKernel=True))
    trainer_doc = yaml.safe_load(render_configmap(job, "team")["data"]["job.yaml"])
    hp = validate_document(trainer_doc).spec.hyperparameters  # what the trainer reads in the pod
    args = speedup_args(hp, "cuda", find_spec=lambda name: object())
    assert args == {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.4,
                    "use_liger_kernel": True}
    from trl import GRPOConfig, RLOOConfig
    from trl.experimental.online_dpo import OnlineDPOConfig
    config = {"grpo": GRPOConfig, "rloo": RLOOConfig, "online-dpo": OnlineDPOConfig}[algorithm]
    assert set(args) <= {f.name for f in dataclasses.fields(config)}  # TRL's own names, none dropped


def test_vllm_server_mode_passes_the_url() -> None:
    hp = validate_document(doc(vllm="server", vllmServerUrl="http://vllm:8000")).spec.hyperparameters
    assert speedup_args(hp, "cuda", find_spec=lambda name: object()) == {
        "use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": "http://vllm:8000", "use_liger_kernel": False}


def test_defaults_leave_both_off() -> None:
    hp = validate_document(doc(gpus=0)).spec.hyperparameters
    assert speedup_args(hp, "cpu", find_spec=lambda name: None) == {"use_vllm": False, "use_liger_kernel": False}


@pytest.mark.parametrize("bad,message", [
    (doc(gpus=0, vllm="colocate"), "hyperparameters.vllm: needs GPUs"),
    (doc(vllm="server"), "vllmServerUrl: is required"),
    (doc(vllm="colocate", vllmServerUrl="http://vllm:8000"), "vllmServerUrl: is required with vllm: server and only"),
    (doc(gpus=0, algorithm="sft", ligerKernel=True), "ligerKernel: needs GPUs"),
    (doc("dpo", vllm="colocate"), "not used by algorithm 'dpo'"),
    (doc("ppo", ligerKernel=True), "not used by algorithm 'ppo'"),
    (doc(vllm="server", vllmServerUrl="vllm:8000"), "vllmServerUrl"),
])
def test_spec_refuses_what_cannot_apply(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=re.escape(message)):
        validate_document(bad)


def test_trainer_refuses_without_cuda_or_package() -> None:
    hp = validate_document(doc(vllm="colocate", ligerKernel=True)).spec.hyperparameters
    with pytest.raises(ConfigError, match="vllm needs CUDA"):
        speedup_args(hp, "cpu", find_spec=lambda name: object())
    with pytest.raises(ConfigError, match="'liger_kernel' package"):
        speedup_args(hp, "cuda", find_spec=lambda name: None if name == "liger_kernel" else object())
