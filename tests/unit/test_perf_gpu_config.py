"""GPU speed-ups as configuration: vLLM generation (grpo, rloo, online-dpo) and Liger kernels.

They cannot run on this CPU-only machine; what is tested is that the spec accepts them only where they
apply, that the ConfigMap carries them to the trainer, that the trainer maps them onto TRL's own fields
(checked against the real TRL config classes), and that it refuses them without CUDA or the package.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from align_api import ManifestError, validate_document
from align_api.constants import ExitCode
from align_operator.renderers import render_configmap
from align_trainer.accel import PACKAGES, REMEDY, speedup_args
from align_trainer.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize("hp,fields", [
    ({"vllm": "colocate"}, ["vllm"]),
    ({"ligerKernel": True}, ["ligerKernel"]),
    ({"vllm": "server", "vllmServerUrl": "http://vllm:8000", "ligerKernel": True}, ["vllm", "ligerKernel"]),
])
def test_a_speedup_the_image_lacks_fails_the_preflight_naming_the_field(
        hp: dict[str, Any], fields: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a trainer image without the package (this machine has neither vllm nor liger-kernel, like the CPU image),
    the pod's preflight refuses the job with the spec field and the manifest line, before any library or model
    loads: not an ImportError deep in training, and not on a GPU node's time."""
    import importlib.util

    from align_trainer import main, models
    for field in fields:
        if importlib.util.find_spec(PACKAGES[field]) is not None:
            pytest.skip(f"{PACKAGES[field]} is installed here: this test needs an image without it")

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("a model was loaded before the preflight refused the job")

    monkeypatch.setattr(models.Models, "__init__", no_model)
    monkeypatch.setattr(main, "quiet_libraries", lambda: pytest.fail("the libraries load only after the preflight"))
    log = tmp_path / "termination-log"
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(log))
    job = doc("grpo", **hp)
    job["spec"]["data"]["train"]["uri"] = str(REPO / "examples" / "data" / "rft.openai.jsonl")
    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job, sort_keys=False))
    code = main.run(["--config", str(config), "--output", str(tmp_path / "out"), "--metrics-port", "-1"])
    assert code == ExitCode.PREFLIGHT_FAILED
    text = log.read_text()
    lines = config.read_text().splitlines()
    for field in fields:
        line = next(i for i, t in enumerate(lines, 1) if t.strip().startswith(f"{field}:"))
        assert f"{config}:{line}: spec.hyperparameters.{field}: needs the {PACKAGES[field]!r} package" in text, text
        assert REMEDY[field] in text
