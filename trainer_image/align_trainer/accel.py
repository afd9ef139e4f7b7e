"""GPU speed-ups from spec.hyperparameters: vLLM generation (grpo, rloo, online-dpo) and Liger kernels.

Both are TRL/transformers switches (`use_vllm`, `vllm_mode`, ..., `use_liger_kernel`); this module maps the
spec onto them and refuses, before any model is loaded, a run that cannot honour them (no CUDA, package
missing from the image). They cannot run on the CPU-only development machine: only this mapping and the
refusals are tested here (tests/unit/test_perf_gpu_config.py); bench/gpu_check.sh exercises the GPU paths.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

from .errors import ConfigError

#: spec field -> the Python package it needs in the trainer image.
PACKAGES = {"vllm": "vllm", "ligerKernel": "liger_kernel"}


def speedup_args(hp: Any, device: str, *, find_spec: Callable[[str], Any] = importlib.util.find_spec) -> dict[str, Any]:
    """TrainingArguments/TRL config fields for spec.hyperparameters.vllm* and ligerKernel. Raises ConfigError
    when one is asked for on CPU or without its package (it would otherwise fail mid-run, or silently not
    apply). Keys a config class lacks are dropped by TrainContext.trainer_args (the spec only allows the
    fields for the algorithms that have them)."""
    wanted = {"vllm": hp.vllm != "off", "ligerKernel": hp.liger_kernel}
    for field, on in wanted.items():
        if not on:
            continue
        if device != "cuda":
            raise ConfigError(f"hyperparameters.{field} needs CUDA; the trainer sees no GPU")
        if find_spec(PACKAGES[field]) is None:
            raise ConfigError(f"hyperparameters.{field} needs the {PACKAGES[field]!r} package, which this trainer "
                              f"image lacks: install align-operator[gpu] or turn {field} off")
    args: dict[str, Any] = {"use_liger_kernel": bool(hp.liger_kernel), "use_vllm": hp.vllm != "off"}
    if hp.vllm == "colocate":
        args.update(vllm_mode="colocate", vllm_gpu_memory_utilization=hp.vllm_gpu_memory_utilization)
    elif hp.vllm == "server":
        args.update(vllm_mode="server", vllm_server_base_url=hp.vllm_server_url)
    return args
