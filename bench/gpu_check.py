"""GPU check after install: sft and dpo with LoRA in bf16 and with 4-bit QLoRA (and flash attention when
flash-attn is installed) on a ~0.5B-parameter model built like the builtin models. Run it as
`bench/gpu_check.sh` on a machine with one GPU; about 3-5 minutes.

Every feature runs `python -m align_trainer` on a real manifest in its own process and reports steady-state
tokens/s (from metrics.jsonl timestamps, first logged step excluded; tokens per step estimated from the
tokenized rows), peak GPU memory (torch.cuda.max_memory_allocated in that process) and an MFU estimate:
FLOPs/token = 4N for LoRA SFT (forward 2N + backward through the frozen base 2N, no weight gradients) and 6N
for DPO (one more forward for the reference), over the GPU's dense bf16 peak (table below, or
GPU_PEAK_TFLOPS). A feature that breaks is FAIL, never skipped: with CUDA present every path must work.

Exit codes: 0 all passed; 1 a feature failed; 3 no CUDA device (nothing was run).
Last line: `gpu_check: passed=N failed=M cuda=<name>`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "examples" / "data"
NO_CUDA = 3
#: ~0.48B parameters: builtin://small's Llama architecture, wider and deeper (same seed and tokenizer).
MEDIUM = dict(hidden_size=1280, intermediate_size=3456, num_hidden_layers=24, num_attention_heads=20,
              num_key_value_heads=20, max_position_embeddings=2048)
#: dense bf16 peak TFLOP/s by GPU name fragment (no sparsity).
PEAK_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L40": 181, "L4": 121, "A10G": 70,
               "A10": 125, "A6000": 155, "4090": 165, "3090": 71, "T4": 65, "V100": 125}
STEPS, BATCH, MAX_LENGTH = 30, 8, 256


def features(flash: bool) -> list[dict[str, Any]]:
    out = [dict(name=f"{algo}-{mode}", algorithm=algo, quantized=mode == "qlora-4bit", attention="sdpa")
           for algo in ("sft", "dpo") for mode in ("lora-bf16", "qlora-4bit")]
    if flash:
        out.append(dict(name="sft-lora-bf16-flash-attention", algorithm="sft", quantized=False,
                        attention="flash_attention_2"))
    return out


def manifest(feature: dict[str, Any], base: str) -> dict[str, Any]:
    data = "sft.openai.jsonl" if feature["algorithm"] == "sft" else "preference.openai.jsonl"
    model: dict[str, Any] = {"base": base, "dtype": "bfloat16", "attention": feature["attention"],
                             "adapter": {"r": 16, "alpha": 32, "dropout": 0.0}}
    if feature["quantized"]:
        model["quantization"] = {"bits": 4}
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
            "metadata": {"name": feature["name"].replace("_", "-")[:63]},
            "spec": {"algorithm": feature["algorithm"], "model": model,
                     "data": {"train": {"uri": str(DATA / data)}},
                     "hyperparameters": {"batchSize": BATCH, "maxSteps": STEPS, "maxLength": MAX_LENGTH,
                                         "learningRate": 1e-4, "loggingSteps": 1, "precision": "bf16"},
                     "resources": {"gpusPerNode": 1}, "checkpoints": {"everySteps": 100000, "keep": 1},
                     "evaluation": {"enabled": False}}}


def tokens_per_row(algorithm: str) -> float:
    from align_trainer import builtin
    tok = builtin.build_tokenizer()
    rows = [json.loads(x) for x in (DATA / ("sft.openai.jsonl" if algorithm == "sft" else
                                            "preference.openai.jsonl")).read_text().splitlines()]
    def n(messages: list[dict[str, str]]) -> int:
        text = tok.apply_chat_template(messages, tokenize=False)
        return min(MAX_LENGTH, len(tok(text, add_special_tokens=False)["input_ids"]))
    if algorithm == "sft":
        return sum(n(r["messages"]) for r in rows) / len(rows)
    prompt = lambda r: r["input"]["messages"]  # noqa: E731
    return sum(n(prompt(r) + r["preferred_output"]) + n(prompt(r) + r["non_preferred_output"])
               for r in rows) / len(rows)


def build_base(root: Path) -> tuple[str, int]:
    import torch

    from align_trainer import builtin
    target = root / "builtin-medium-bf16"
    if not (target / "config.json").exists():
        model = builtin.build_model("small", **MEDIUM).to(torch.bfloat16)
        model.save_pretrained(target)
        builtin.build_tokenizer().save_pretrained(target)
    config = json.loads((target / "config.json").read_text())
    h, i, layers, v = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], config["vocab_size"]
    params = layers * (4 * h * h + 3 * h * i + 2 * h) + v * h + h
    return f"file://{target}", params


def worker(config: Path, output: Path) -> None:
    """One feature in this process: train, then print peak GPU memory as JSON on the last line."""
    import torch

    from align_trainer.main import run
    torch.cuda.reset_peak_memory_stats()
    code = run(["--config", str(config), "--output", str(output), "--metrics-port", "-1"])
    print(json.dumps({"exit": int(code), "peak_bytes": torch.cuda.max_memory_allocated()}))
    sys.exit(int(code))


def throughput(output: Path) -> float:
    """Optimizer steps per second between the first and the last logged step (startup excluded)."""
    records = [json.loads(x) for x in (output / "metrics.jsonl").read_text().splitlines()]
    steps = [(r["step"], r["time"]) for r in records if "loss" in r and "step" in r]
    (s0, t0), (s1, t1) = steps[0], steps[-1]
    return (s1 - s0) / (t1 - t0)


def check(feature: dict[str, Any], base: str, params: int, root: Path, peak_tflops: float | None) -> tuple[bool, str]:
    config = root / f"{feature['name']}.yaml"
    config.write_text(yaml.safe_dump(manifest(feature, base)))
    output = root / feature["name"]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--worker", str(config), str(output)], capture_output=True,
                          text=True)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return False, f"exit code {proc.returncode} after {seconds:.0f}s\n{tail}"
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]
    tokens_s = throughput(output) * BATCH * tokens_per_row(feature["algorithm"])
    flops_per_token = (4 if feature["algorithm"] == "sft" else 6) * params
    mfu = f"{flops_per_token * tokens_s / (peak_tflops * 1e12):.3f}" if peak_tflops else "unknown (set GPU_PEAK_TFLOPS)"
    return True, f"tokens/s={tokens_s:.0f} peak_gpu_mem={peak / 2**30:.2f}GiB mfu={mfu} wall={seconds:.0f}s"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("ALIGN_CACHE_DIR", Path.home() / ".cache" / "align_trainer")))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
    import torch
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible to torch (torch.cuda.is_available() is False); nothing was "
              f"run. torch {torch.__version__}, built for CUDA {torch.version.cuda}.")
        print("gpu_check: passed=0 failed=0 cuda=absent")
        return NO_CUDA
    import importlib.util
    import tempfile
    name = torch.cuda.get_device_name(0)
    peak = float(os.environ["GPU_PEAK_TFLOPS"]) if os.environ.get("GPU_PEAK_TFLOPS") else \
        next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    flash = importlib.util.find_spec("flash_attn") is not None
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    print(f"gpu: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 peak "
          f"{peak or 'unknown'} TFLOP/s; bitsandbytes {'present' if bnb else 'MISSING'}; flash-attn "
          f"{'present' if flash else 'not installed (not checked)'}", flush=True)
    base, params = build_base(args.cache)
    print(f"model: {base} ({params / 1e9:.2f}B parameters, bf16), {STEPS} steps, batch {BATCH}, maxLength "
          f"{MAX_LENGTH}, LoRA r=16", flush=True)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for feature in features(flash):
            ok, detail = check(feature, base, params, Path(tmp), peak)
            passed, failed = passed + ok, failed + (not ok)
            print(f"{'PASS' if ok else 'FAIL'} {feature['name']}: {detail}", flush=True)
    print(f"gpu_check: passed={passed} failed={failed} cuda={name.replace(' ', '_')}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
