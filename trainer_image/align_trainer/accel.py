"""GPU speed-ups from spec.hyperparameters: vLLM generation (grpo, rloo, online-dpo) and Liger kernels.

Both are TRL/transformers switches (`use_vllm`, `vllm_mode`, ..., `use_liger_kernel`); this module maps the
spec onto them and refuses a run that cannot honour them: the preflight refuses a package missing from the
image (`missing_packages`, before any library or model loads), the trainer arguments refuse a run without
CUDA. The packages are the `accel` extra, which the trainer image's CUDA build installs by default
(trainer_image/Dockerfile, build argument TRAINER_EXTRAS) and a CPU build leaves out. They cannot run on the CPU-only development machine: only this mapping and the
refusals are tested here (tests/unit/test_perf_gpu_config.py); bench/gpu_check.sh exercises the GPU paths.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from .errors import ConfigError

#: spec field -> the Python package it needs in the trainer image.
PACKAGES = {"vllm": "vllm", "ligerKernel": "liger_kernel"}
#: spec field -> where an image with its package comes from (docs/install.md).
REMEDY = {"vllm": "use a trainer image built on vLLM's own stack with the accel extra (vLLM pins torch and "
                  "transformers versions the default image does not have; docs/install.md) or set vllm: off",
          "ligerKernel": "use the default CUDA build of trainer_image/Dockerfile (TRAINER_EXTRAS with liger) or "
                         "turn ligerKernel off"}


def wanted(hp: Any) -> list[str]:
    """The speed-up fields this job asks for (spec names)."""
    return [field for field, on in (("vllm", hp.vllm != "off"), ("ligerKernel", hp.liger_kernel)) if on]


def missing_packages(hp: Any, *, find_spec: Callable[[str], Any] = importlib.util.find_spec) -> list[tuple[str, str]]:
    """(spec field, package) for each speed-up asked for whose package this image lacks."""
    return [(field, PACKAGES[field]) for field in wanted(hp) if find_spec(PACKAGES[field]) is None]


def speedup_args(hp: Any, device: str, *, find_spec: Callable[[str], Any] = importlib.util.find_spec) -> dict[str, Any]:
    """TrainingArguments/TRL config fields for spec.hyperparameters.vllm* and ligerKernel. Raises ConfigError
    when one is asked for on CPU or without its package (it would otherwise fail mid-run, or silently not
    apply). Keys a config class lacks are dropped by TrainContext.trainer_args (the spec only allows the
    fields for the algorithms that have them)."""
    for field in wanted(hp):
        if device != "cuda":
            raise ConfigError(f"hyperparameters.{field} needs CUDA; the trainer sees no GPU")
    for field, package in missing_packages(hp, find_spec=find_spec):  # the preflight said so already in a pod
        raise ConfigError(f"hyperparameters.{field} needs the {package!r} package, which this trainer image lacks: "
                          f"{REMEDY[field]}")
    args: dict[str, Any] = {"use_liger_kernel": bool(hp.liger_kernel), "use_vllm": hp.vllm != "off"}
    if hp.vllm == "colocate":
        args.update(vllm_mode="colocate", vllm_gpu_memory_utilization=hp.vllm_gpu_memory_utilization)
    elif hp.vllm == "server":
        args.update(vllm_mode="server", vllm_server_base_url=hp.vllm_server_url)
    return args
