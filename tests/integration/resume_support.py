"""Run a job in-process uninterrupted, or interrupted (a real SIGTERM, or a real SIGKILL in a forked child) and
resumed, recording every checkpoint's state, and compare the two runs (test_resume_complete.py)."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.conftest import REPO

from .trainer_support import read_metrics

#: Fields of a metrics.jsonl record that are wall-clock, not training state.
CLOCK = {"time", "step_time", "tokens_per_second", "train_runtime"}
TOLERANCE = 1e-5


def small_data(tmp_path: Path, source: str, rows: int) -> Path:
    lines = (REPO / "examples" / "data" / source).read_text().splitlines()[:rows]
    path = tmp_path / f"small.{source}"
    path.write_text("\n".join(lines) + "\n")
    return path


def point_data_at(config: Path, data: Path) -> Path:
    doc = yaml.safe_load(config.read_text())
    doc["spec"]["data"]["train"]["uri"] = str(data)
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


class Recorder:
    """Every custom-loop checkpoint's state and adapter weights, by step (deep copies taken at save time)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from align_trainer import checkpoints
        self.saved: dict[int, dict[str, Any]] = {}
        real = checkpoints.save_custom_checkpoint

        def save(ctx: Any, model: Any, step: int, state: Any) -> Path:
            from peft import get_peft_model_state_dict

            from align_trainer.models import _unwrap_peft
            weights = {k: v.detach().clone() for k, v in get_peft_model_state_dict(_unwrap_peft(model)).items()}
            self.saved[step] = {"state": copy.deepcopy(dict(state)), "adapter": weights}
            return real(ctx, model, step, state)
        monkeypatch.setattr(checkpoints, "save_custom_checkpoint", save)


def run_job(config: Path, output: Path) -> int:
    from align_trainer.main import run
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        return run(["--config", str(config), "--metrics-port", "-1"])


def at_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, call: int, action: Callable[[], None]) -> None:
    """Run `action` just before the `call`-th call (1-based) of owner.name, then the call itself."""
    real, calls = getattr(owner, name), [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            action()
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, wrapped)


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def killed_in_child(config: Path, output: Path, target: str, call: int) -> int:
    """Run the job in a child process that SIGKILLs itself just before the `call`-th call of `target`
    ("module:attribute[.attribute]"); the child's exit status (-9)."""
    import subprocess
    import sys
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGN_OUTPUT_DIR": str(output)}
    done = subprocess.run([sys.executable, "-m", "tests.integration.resume_support", str(config), target, str(call)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stdout[-2000:] + done.stderr[-3000:]
    return done.returncode


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two saved states differ beyond TOLERANCE (tensors, arrays, numbers, nested containers)."""
    import numpy as np
    import torch
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{path}: shape/dtype {tuple(a.shape)}/{a.dtype} != {tuple(b.shape)}/{b.dtype}"]
        if a.dtype in (torch.uint8, torch.int64, torch.int32, torch.bool):
            return [] if torch.equal(a, b) else [f"{path}: differs"]
        return [] if torch.allclose(a.float(), b.float(), atol=TOLERANCE, rtol=TOLERANCE) else \
            [f"{path}: max |diff| {(a.float() - b.float()).abs().max().item():.3g}"]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return [] if np.array_equal(np.asarray(a), np.asarray(b)) else [f"{path}: array differs"]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(map(str, set(a) ^ set(b)))} in one only"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            (a == b or abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b)) or (a != a and b != b))
        return [] if ok else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def metric_records(output: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without wall-clock values (and without the records that hold nothing else, such as the
    throughput an HF trainer logs when a SIGTERM ends its train())."""
    records = [{k: v for k, v in r.items() if k not in CLOCK} for r in read_metrics(output)]
    return [r for r in records if set(r) - {"step", "epoch"}]


def final_adapter(output: Path) -> dict[str, Any]:
    from safetensors.torch import load_file
    return load_file(str(output / "final" / "adapter_model.safetensors"))


def assert_same_run(whole: tuple[Path, Recorder], resumed: tuple[Path, Recorder], after: int) -> None:
    """The resumed run's checkpoints after step `after`, its final adapter and its metrics history equal the
    uninterrupted run's."""
    (out_a, rec_a), (out_b, rec_b) = whole, resumed
    later = sorted(s for s in rec_b.saved if s > after)
    assert later, f"the resumed run saved no checkpoint after step {after}: {sorted(rec_b.saved)}"
    problems = [d for s in later for d in differences(rec_a.saved[s], rec_b.saved[s], f"checkpoint-{s}")]
    problems += differences(final_adapter(out_a), final_adapter(out_b), "final adapter")
    problems += differences(metric_records(out_a), metric_records(out_b), "metrics.jsonl")
    assert not problems, "resumed run != uninterrupted run:\n" + "\n".join(problems[:20])


if __name__ == "__main__":  # killed_in_child's process: python -m tests.integration.resume_support CONFIG TARGET CALL
    import importlib
    import sys

    import torch
    torch.set_num_threads(1)
    config_arg, target_arg, call_arg = sys.argv[1:4]
    module_name, _, attribute = target_arg.partition(":")
    holder: Any = importlib.import_module(module_name)
    *owners, last = attribute.split(".")
    for name in owners:
        holder = getattr(holder, name)
    with pytest.MonkeyPatch.context() as patch:
        at_call(patch, holder, last, int(call_arg), sigkill)
        from align_trainer.main import run
        sys.exit(run(["--config", config_arg, "--metrics-port", "-1"]))
