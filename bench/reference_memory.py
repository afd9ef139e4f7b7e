"""Reference-model memory: DPO with the reference as the base with adapters disabled (what the trainer
does) vs a separate frozen copy of the base (what a plain DPO setup does), on builtin://small (~57M
parameters). Also the step time with precomputed reference log-probs vs adapters-off.

Each variant runs in its own process (same trainer code, data and settings; only the reference differs).
Reported per variant: the peak RSS while training (sampled every 5 ms during trainer.train(), so the
transient of reading safetensors at load time, identical in spirit for all variants, is not what is
compared), that peak's growth over the process's RSS after imports (the Python + torch + TRL runtime,
identical in all three), and the whole-process peak RSS (ru_maxrss) for reference.

    python bench/reference_memory.py [--steps 8] [--repeat 2]   # minimum of the repeats
    python bench/reference_memory.py --hidden 2048 --layers 5 --steps 2 --repeat 1   # ~253M parameters
    python bench/reference_memory.py --model builtin://smollm2-135m-instruct --steps 4 --repeat 1   # a real model

--hidden/--layers (optionally --intermediate, --heads) size a larger model built exactly like
builtin://small (builtin.build_model with LlamaConfig overrides, same seed and tokenizer), saved once to
the builtin cache and loaded from there as file://. The ratio depends on size: the imports (~450 MiB) and
the activations are common to both variants, so only when the weights dominate does it approach 0.5.
--model takes any spec.model.base instead (default builtin://small).

Each worker checks what it measures before training: adapters-off and precomputed hold no reference model (the
reference is the policy's own base with its adapters disabled), precomputed has the reference log-probs in its
dataset, and the separate copy's reference shares no weight storage with the policy (its own copy of every weight).
A variant that is not what it says stops the bench.

Last line: `reference_memory: ratio=X` with X = training peak RSS (adapters off) / (separate copy).
"""

from __future__ import annotations

import argparse
import json
import math
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


def manifest(path: Path, variant: str, steps: int, base: str) -> Path:
    reference = {"kind": "precomputed"} if variant == "precomputed" else {"kind": "base"}
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": f"bench-{variant}"},
           "spec": {"algorithm": "dpo",
                    "model": {"base": base, "adapter": {"r": 8, "alpha": 16, "dropout": 0.0},
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


def sized_overrides(hidden: int | None, layers: int | None, intermediate: int | None,
                    heads: int | None) -> dict[str, int]:
    """LlamaConfig overrides of builtin://small for --hidden/--layers; {} means builtin://small itself."""
    if hidden is None and layers is None:
        return {}
    from align_trainer import builtin
    small = builtin.ARCHITECTURES["small"]
    hidden = hidden or small["hidden_size"]
    heads = heads or max(1, hidden // 128)
    # small's MLP ratio (2048/768 = 8/3), rounded up to a multiple of 64
    intermediate = intermediate or -(-hidden * 8 // 3 // 64) * 64
    return dict(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers or small["num_hidden_layers"],
                num_attention_heads=heads, num_key_value_heads=heads)


def model_uri(overrides: dict[str, int]) -> str:
    """builtin://small, or file:// of the larger model built by builtin.build_model (built once, cached)."""
    if not overrides:
        return "builtin://small"
    from align_trainer import builtin
    tag = "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    target = builtin.cache_root() / "builtin" / f"bench-small-{tag}-{builtin.VERSION}"
    if not (target / "config.json").exists():
        staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        builtin.build_model("small", **overrides).save_pretrained(staging)
        builtin.build_tokenizer().save_pretrained(staging)
        staging.rename(target)
    return f"file://{target}"


def reference_bytes(trainer: Any) -> int:
    """Bytes of the reference model's weights that are not the policy's own tensors (0 when there is no reference
    model: TRL then runs the policy with its adapters disabled)."""
    ref = trainer.ref_model
    if ref is None:
        return 0
    policy = {p.data_ptr() for p in trainer.model.parameters()}
    return sum(p.numel() * p.element_size() for p in ref.parameters() if p.data_ptr() not in policy)


def check_reference(variant: str, trainer: Any) -> int:
    """The variant's reference is what it claims (see the module docstring); returns the reference's own bytes."""
    own = reference_bytes(trainer)
    base = sum(p.numel() * p.element_size() for n, p in trainer.model.named_parameters() if "lora_" not in n)
    precomputed = "ref_chosen_logps" in trainer.train_dataset.column_names
    ok = {"adapters-off": trainer.ref_model is None and not precomputed,
          "precomputed": trainer.ref_model is None and precomputed,
          "separate-copy": own >= base}[variant]
    if not ok:
        raise SystemExit(f"{variant}: not the reference it claims (reference model {type(trainer.ref_model).__name__}, "
                         f"{own / 2**20:.0f} MiB of its own weights against the base's {base / 2**20:.0f} MiB, "
                         f"precomputed log-probs {precomputed})")
    return own


def worker(variant: str, steps: int, base: str) -> dict[str, Any]:
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
        config = manifest(Path(tmp) / "job.yaml", variant, steps, base)
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
        own = check_reference(variant, trainer)
        sampler = PeakSampler()
        started = time.perf_counter()
        with sampler:
            trainer.train()
        train_seconds = time.perf_counter() - started
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": variant, "baseline_mb": baseline, "train_peak_mb": sampler.peak,
            "growth_mb": sampler.peak - baseline, "process_peak_mb": process_peak,
            "step_seconds": train_seconds / steps, "reference_own_mb": own / 2**20}


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


def run_variant(variant: str, steps: int, base: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--worker", variant, "--steps", str(steps), "--base", base],
                         capture_output=True, text=True, env={**os.environ, "ALIGN_LOG_LEVEL": "ERROR"})
    if out.returncode != 0:
        raise SystemExit(f"{variant} worker exited {out.returncode}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--hidden", type=int, help="hidden size of a larger model built like builtin://small")
    parser.add_argument("--layers", type=int, help="layers of that model (default: small's 8)")
    parser.add_argument("--intermediate", type=int, help="MLP size (default: small's ratio 8/3 of --hidden)")
    parser.add_argument("--heads", type=int, help="attention heads (default: hidden / 128)")
    parser.add_argument("--model", help="any spec.model.base instead of builtin://small (e.g. "
                                            "builtin://smollm2-135m-instruct); not with --hidden/--layers")
    parser.add_argument("--worker", choices=VARIANTS)
    parser.add_argument("--base", default="builtin://small", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.base)))
        return
    from transformers import AutoConfig
    overrides = sized_overrides(args.hidden, args.layers, args.intermediate, args.heads)
    if args.model and (overrides or args.intermediate or args.heads):
        parser.error("--model is not sized: leave out --hidden, --layers, --intermediate and --heads")
    if args.model:
        from align_trainer.models import resolve_model
        base = args.model  # resolved (a GGUF file converted once, untimed) before the workers load it from the cache
        path = resolve_model(base, base_dir=REPO, cache_dir=Path(tempfile.gettempdir()) / "bench-cache")
    elif overrides:
        base = model_uri(overrides)
        path = base[len("file://"):]
    else:
        from align_trainer import builtin
        base, path = "builtin://small", builtin.materialize("small")
    config = AutoConfig.from_pretrained(path)
    from safetensors import safe_open
    params = 0
    for shard in Path(path).glob("*.safetensors"):  # tied embeddings are stored once
        with safe_open(str(shard), "pt") as f:
            params += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    name = args.model or ("builtin://small" if not overrides else "builtin://small sized by --hidden/--layers")
    print(f"model: {name}, {params / 1e6:.1f}M parameters ({config.num_hidden_layers} layers, "
          f"hidden {config.hidden_size}, vocabulary {config.vocab_size}), fp32, DPO, LoRA r=8, batch 2 pairs, "
          f"maxLength 64, {args.steps} steps; load average {os.getloadavg()[0]:.1f}")
    results: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for variant in VARIANTS:
            r = run_variant(variant, args.steps, base)
            best = results.get(variant)
            results[variant] = r if best is None else {k: min(best[k], r[k]) if isinstance(r[k], float) else r[k]
                                                         for k in r}
    for v in VARIANTS:
        r = results[v]
        print(f"{v:14s} training peak RSS {r['train_peak_mb']:6.0f} MiB (growth over imports {r['growth_mb']:5.0f})"
              f"  process peak {r['process_peak_mb']:6.0f} MiB  step {r['step_seconds']:.2f}s"
              f"  reference's own weights {r['reference_own_mb']:.0f} MiB")
    off, copy, pre = results["adapters-off"], results["separate-copy"], results["precomputed"]
    print(f"growth-over-imports ratio adapters-off/separate-copy: {off['growth_mb'] / copy['growth_mb']:.3f}")
    print(f"whole-process peak RSS ratio adapters-off/separate-copy: {off['process_peak_mb'] / copy['process_peak_mb']:.3f}")
    print(f"step-time ratio precomputed/adapters-off: {pre['step_seconds'] / off['step_seconds']:.3f}")
    print(f"load average now {os.getloadavg()[0]:.1f}")
    print(f"reference_memory: ratio={off['train_peak_mb'] / copy['train_peak_mb']:.3f}")


if __name__ == "__main__":
    main()
