"""Reference-model memory: DPO with the reference as the base with adapters disabled (what the trainer
does) vs a separate frozen copy of the base (what a plain DPO setup does), on builtin://small (~57M
parameters). Also the step time with precomputed reference log-probs vs adapters-off.

Each variant runs in its own process (same trainer code, data and settings; only the reference differs).
Reported per variant: the peak RSS while training (sampled every 5 ms during trainer.train(), so the
transient of reading safetensors at load time, identical in spirit for all variants, is not what is
compared), that peak's growth over the process's RSS after imports (the Python + torch + TRL runtime,
identical in all three), and the whole-process peak RSS (ru_maxrss) for reference.

    python bench/reference_memory.py [--steps 8] [--repeat 2]   # minimum of the repeats

Last line: `reference_memory: ratio=X` with X = training peak RSS (adapters off) / (separate copy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "examples" / "data" / "preference.openai.jsonl"
VARIANTS = ("adapters-off", "separate-copy", "precomputed")


def manifest(path: Path, variant: str, steps: int) -> Path:
    reference = {"kind": "precomputed"} if variant == "precomputed" else {"kind": "base"}
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": f"bench-{variant}"},
           "spec": {"algorithm": "dpo",
                    "model": {"base": "builtin://small", "adapter": {"r": 8, "alpha": 16, "dropout": 0.0},
                              "reference": reference},
                    "data": {"train": {"uri": str(DATA), "maxSamples": 2 * steps}},
                    "hyperparameters": {"batchSize": 2, "maxSteps": steps, "learningRate": 1e-3, "maxLength": 64,
                                        "loggingSteps": 1},
                    "resources": {"gpusPerNode": 0}, "checkpoints": {"everySteps": 1000},
                    "evaluation": {"enabled": False}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def worker(variant: str, steps: int) -> dict[str, Any]:
    """One variant in this process: build the trainer's context, run DPO, report memory and step time."""
    import torch
    import trl  # noqa: F401  (imported before the baseline so every variant pays the same runtime)
    from trl import DPOConfig, DPOTrainer

    import align_api
    from align_trainer.algorithms import dpo
    from align_trainer.main import build_context, quiet_libraries
    from align_trainer.runtime import DataKind

    # one intra-op thread: on a shared machine, waiting thread pools make step times swing several-fold
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    quiet_libraries()
    baseline = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        config = manifest(Path(tmp) / "job.yaml", variant, steps)
        job = align_api.load_file(config)[0]
        ctx = build_context(job, manifest=config, output=Path(tmp) / "out", data_kind=DataKind.PREFERENCE,
                            metrics_port=None)
        ctx.callbacks = ctx.callbacks[:2]  # no progress lines in the benchmark output
        args = ctx.trainer_args(DPOConfig, **dpo.loss_settings(ctx.hp))
        if variant == "separate-copy":
            # the conventional setup: a second, frozen copy of the base as ref_model
            trainer = DPOTrainer(model=ctx.models.policy(), ref_model=ctx.models.base(), args=args,
                                 train_dataset=ctx.train_dataset, processing_class=ctx.tokenizer,
                                 callbacks=ctx.callbacks)
        else:
            trainer = DPOTrainer(model=ctx.models.policy(), args=args, train_dataset=ctx.train_dataset,
                                 processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
            ctx.models.bind_reference(trainer.model)
        sampler = PeakSampler()
        started = time.perf_counter()
        with sampler:
            trainer.train()
        train_seconds = time.perf_counter() - started
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": variant, "baseline_mb": baseline, "train_peak_mb": sampler.peak,
            "growth_mb": sampler.peak - baseline, "process_peak_mb": process_peak,
            "step_seconds": train_seconds / steps}


class PeakSampler:
    """Highest RSS seen while the block runs (a 5 ms sampling thread)."""

    def __init__(self) -> None:
        import threading
        self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def run_variant(variant: str, steps: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--worker", variant, "--steps", str(steps)], check=True,
                         capture_output=True, text=True, env={**os.environ, "ALIGN_LOG_LEVEL": "ERROR"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--worker", choices=VARIANTS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return
    from align_trainer import builtin
    from transformers import AutoConfig
    path = builtin.materialize("small")
    config = AutoConfig.from_pretrained(path)
    params = sum(p.numel() for p in builtin.build_model("small").parameters())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"model: builtin://small, {params / 1e6:.1f}M parameters ({config.num_hidden_layers} layers, "
          f"hidden {config.hidden_size}), fp32, DPO, LoRA r=8, batch 2 pairs, maxLength 64, {args.steps} steps")
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            r = run_variant(variant, args.steps)
            best = results.get(variant)
            results[variant] = r if best is None else {k: min(best[k], r[k]) if isinstance(r[k], float) else r[k]
                                                         for k in r}
    for v in VARIANTS:
        r = results[v]
        print(f"{v:14s} training peak RSS {r['train_peak_mb']:6.0f} MiB (growth over imports {r['growth_mb']:5.0f})"
              f"  process peak {r['process_peak_mb']:6.0f} MiB  step {r['step_seconds']:.2f}s")
    off, copy, pre = results["adapters-off"], results["separate-copy"], results["precomputed"]
    print(f"growth-over-imports ratio adapters-off/separate-copy: {off['growth_mb'] / copy['growth_mb']:.3f}")
    print(f"whole-process peak RSS ratio adapters-off/separate-copy: {off['process_peak_mb'] / copy['process_peak_mb']:.3f}")
    print(f"step-time ratio precomputed/adapters-off: {pre['step_seconds'] / off['step_seconds']:.3f}")
    print(f"reference_memory: ratio={off['train_peak_mb'] / copy['train_peak_mb']:.3f}")


if __name__ == "__main__":
    main()
