"""One process vs two (torchrun, gloo on CPU) with the same data and the same global batch, side by side.

For each algorithm, the same manifest runs twice: 1 rank with batchSize 2B, and 2 ranks with batchSize B
(batchSize is per rank, as in TRL). Reported per algorithm: the largest difference between the two loss
curves (and reward curves for the online ones), the final metrics, and the median per-step time of each
(the gap between consecutive lines of metrics.jsonl, the first step excluded: it includes warm-up).
Then the bytes DDP all-reduces per optimizer step: the gradients of the trainable parameters, LoRA vs full
fine-tuning, for builtin://tiny and for a Qwen2.5-0.5B-shaped model (built on the meta device: no weights).

    python bench/multirank.py [--algorithms sft,dpo,grpo,ppo] [--steps 8] [--batch 2]

Last line: `multirank: sft=<max |dloss|> dpo=... grpo=... ppo=<|dreward|> step_ratio_dpo=<2 ranks / 1> ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "examples" / "data"
LETTERS = {"type": "python", "name": "letters",
           "source": "def grade(sample, item):\n    text = sample['output_text']\n"
                     "    return sum(c.islower() for c in text) / max(1, len(text))\n"}
TRAIN = {"sft": ("sft.openai.jsonl", "openai-chat"), "dpo": ("preference.openai.jsonl", "openai-preference"),
         "grpo": ("rft.openai.jsonl", "openai-rft"), "ppo": ("rft.openai.jsonl", "openai-rft")}


def manifest(algorithm: str, steps: int, batch: int, processes: int, seed: int = 42) -> dict[str, Any]:
    uri, fmt = TRAIN[algorithm]
    hp: dict[str, Any] = {"batchSize": batch, "maxSteps": steps, "loggingSteps": 1, "learningRate": 0.005,
                          "maxLength": 96, "seed": seed}
    spec: dict[str, Any] = {}
    if algorithm in ("grpo", "ppo"):
        hp.update(numGenerations=2, maxCompletionLength=4, temperature=0.5, learningRate=0.05)
        spec["grader"] = LETTERS
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": f"{algorithm}-{processes}"},
            "spec": {"algorithm": algorithm,
                     "model": {"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16, "dropout": 0.0}},
                     "data": {"train": {"uri": str(DATA / uri), "format": fmt}}, "hyperparameters": hp,
                     "resources": {"gpusPerNode": 0, "processesPerNode": processes},
                     "checkpoints": {"everySteps": 1000}, "evaluation": {"enabled": False}, **spec}}


def run(algorithm: str, steps: int, batch: int, processes: int, work: Path, seed: int = 42) -> list[dict[str, Any]]:
    """Train and return metrics.jsonl (the global batch is batch * processes)."""
    config = work / f"{algorithm}-{processes}-{seed}.yaml"
    config.write_text(yaml.safe_dump(manifest(algorithm, steps, batch, processes, seed), sort_keys=False))
    out = work / f"{algorithm}-{processes}-{seed}"
    trainer = ["-m", "align_trainer", "--config", str(config), "--output", str(out), "--metrics-port", "-1"]
    launcher = ["-m", "align_trainer.launch", f"--nproc-per-node={processes}", "--standalone"] if processes > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGN_TERMINATION_LOG": os.devnull}
    done = subprocess.run([sys.executable, *launcher, *trainer], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{algorithm} x{processes} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def curve(records: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in records if key in r]


def step_seconds(records: list[dict[str, Any]]) -> float:
    times = [r["time"] for r in records if "loss" in r]
    gaps = [b - a for a, b in zip(times[1:], times[2:])]  # from step 2 on: step 1 carries the warm-up
    return statistics.median(gaps) if gaps else float("nan")


def allreduce_bytes() -> list[tuple[str, int, int]]:
    """(model, LoRA r=8 all-linear gradient bytes, full fine-tuning gradient bytes), fp32 gradients."""
    import torch
    from peft import LoraConfig, get_peft_model

    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(REPO / "trainer_image"))
    from align_trainer import builtin
    from align_trainer.distributed import gradient_bytes

    qwen = LlamaConfig(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151_936, tie_word_embeddings=True)
    makers = {"builtin://tiny": lambda: builtin.build_model("tiny"),
              "Qwen2.5-0.5B shape": lambda: LlamaForCausalLM(qwen)}
    out = []
    for name, make in makers.items():
        with torch.device("meta"):
            full = make()
            lora = get_peft_model(make(), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
        out.append((name, gradient_bytes(lora), gradient_bytes(full)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algorithms", default="sft,dpo,grpo,ppo")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2, help="per-rank batch of the 2-rank run")
    args = parser.parse_args()
    summary: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm in args.algorithms.split(","):
            one = run(algorithm, args.steps, 2 * args.batch, 1, Path(tmp))
            two = run(algorithm, args.steps, args.batch, 2, Path(tmp))
            key = "reward" if algorithm == "ppo" else "loss"
            a, b = curve(one, "loss"), curve(two, "loss")
            dloss = max(abs(x - y) for x, y in zip(a, b))
            print(f"{algorithm}: loss 1 rank  {[round(x, 4) for x in a]}")
            print(f"{algorithm}: loss 2 ranks {[round(x, 4) for x in b]}  max |diff| {dloss:.2e}")
            if algorithm in ("grpo", "ppo"):
                # sampling differs between 1 and 2 ranks (each rank draws with its own seed), so the curves can
                # only agree up to sampling noise: measure that noise as 1 rank with the next seed
                other = run(algorithm, args.steps, 2 * args.batch, 1, Path(tmp), seed=43)
                for extra in ("reward", "objective/kl", "loss"):
                    if curve(one, extra):
                        ra, rb, rc = curve(one, extra), curve(two, extra), curve(other, extra)
                        print(f"{algorithm}: {extra} mean over steps: 1 rank {statistics.mean(ra):.4f}, 2 ranks "
                              f"{statistics.mean(rb):.4f} (|diff| {abs(statistics.mean(ra) - statistics.mean(rb)):.4f}); "
                              f"1 rank seed 43 {statistics.mean(rc):.4f} (|diff| "
                              f"{abs(statistics.mean(ra) - statistics.mean(rc)):.4f}); last 4 steps "
                              f"{statistics.mean(ra[-4:]):.4f} / {statistics.mean(rb[-4:]):.4f} / {statistics.mean(rc[-4:]):.4f}")
            t1, t2 = step_seconds(one), step_seconds(two)
            print(f"{algorithm}: median step time 1 rank {t1:.3f} s, 2 ranks {t2:.3f} s, ratio {t2 / t1:.2f}")
            summary[algorithm] = f"{dloss:.2e}" if key == "loss" else \
                f"{abs(statistics.mean(curve(one, 'reward')) - statistics.mean(curve(two, 'reward'))):.3f}"
            summary[f"step_ratio_{algorithm}"] = f"{t2 / t1:.2f}"
    for name, lora, full in allreduce_bytes():
        print(f"all-reduced per step, {name}: LoRA r=8 {lora / 2**20:.2f} MiB, full fine-tuning {full / 2**20:.1f} MiB"
              f" ({full / lora:.0f}x)")
    print("multirank: " + " ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
