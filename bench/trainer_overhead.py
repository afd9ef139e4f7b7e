"""Trainer overhead: `python -m align_trainer` vs a plain TRL script doing the same DPO run.

Same model (builtin://tiny, loaded from the same directory), same 64 preference pairs (the plain script
reads a TRL-format copy written beforehand, untimed), same LoRA, hyperparameters, logging every step and
checkpoints at the same interval; both save the final adapter. Each side runs as a fresh process and is
timed from start to exit (imports included); runs alternate, and the median of --repeat runs is used.
Ours also validates every row, serves Prometheus metrics, writes metrics.jsonl/status.json, renames
checkpoints into place and writes a model card.

    python bench/trainer_overhead.py [--steps 120] [--repeat 5]

Last line: `trainer_overhead: ratio=X` with X = wall time (ours) / wall time (plain TRL).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "examples" / "data" / "preference.openai.jsonl"
SETTINGS = dict(batch=8, lr=5e-3, max_length=96, beta=0.1, r=8, alpha=16, save_every=40, seed=42)

PLAIN_TRL = '''
import json, sys
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

model_dir, data_file, out, steps, s = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir)
lora = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
rows = [json.loads(line) for line in open(data_file)]
args = DPOConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=s["batch"], learning_rate=s["lr"],
                 max_length=s["max_length"], beta=s["beta"], logging_steps=1, save_steps=s["save_every"],
                 report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False, seed=s["seed"],
                 disable_tqdm=True)
trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                     peft_config=lora)  # TRL's idiomatic LoRA: it wraps the model, reference = adapters off
trainer.train()
trainer.save_model(out + "/final")
'''


def ours_manifest(path: Path, steps: int) -> Path:
    s = SETTINGS
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "bench-overhead"},
           "spec": {"algorithm": "dpo",
                    "model": {"base": "builtin://tiny",
                              "adapter": {"r": s["r"], "alpha": s["alpha"], "dropout": 0.0}},
                    "data": {"train": {"uri": str(DATA), "format": "openai-preference"}},
                    "hyperparameters": {"batchSize": s["batch"], "maxSteps": steps, "learningRate": s["lr"],
                                        "maxLength": s["max_length"], "beta": s["beta"], "loggingSteps": 1,
                                        "seed": s["seed"]},
                    "resources": {"gpusPerNode": 0}, "checkpoints": {"everySteps": s["save_every"], "keep": 100},
                    "evaluation": {"enabled": False}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def trl_copy(path: Path) -> Path:
    """The same pairs in TRL's conversational preference format (what a plain script would be given)."""
    with DATA.open() as src, path.open("w") as dst:
        for line in src:
            row = json.loads(line)
            dst.write(json.dumps({"prompt": row["input"]["messages"], "chosen": row["preferred_output"],
                                  "rejected": row["non_preferred_output"]}) + "\n")
    return path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from align_trainer import builtin
    model_dir = builtin.materialize("tiny")
    # one intra-op thread: on a shared 2-core machine, waiting thread pools make run times swing 5x
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "ALIGN_LOG_LEVEL": "WARNING",
           "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ours_times, plain_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = ours_manifest(tmp_path / "job.yaml", args.steps)
        data = trl_copy(tmp_path / "pairs.trl.jsonl")
        script = tmp_path / "plain_trl.py"
        script.write_text(PLAIN_TRL)
        for i in range(args.repeat):
            ours = [sys.executable, "-m", "align_trainer", "--config", str(config), "--output",
                    str(tmp_path / f"ours-{i}"), "--metrics-port", "0"]
            plain = [sys.executable, str(script), str(model_dir), str(data), str(tmp_path / f"plain-{i}"),
                     str(args.steps), json.dumps(SETTINGS)]
            pair = [("ours", ours), ("plain", plain)] if i % 2 == 0 else [("plain", plain), ("ours", ours)]
            for name, cmd in pair:
                (ours_times if name == "ours" else plain_times).append(timed(cmd, env))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"DPO on builtin://tiny, {args.steps} steps, batch {SETTINGS['batch']}, checkpoint every "
          f"{SETTINGS['save_every']}, {args.repeat} alternating runs each (wall time incl. imports), "
          f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    print("ours:  " + " ".join(f"{t:.1f}s" for t in ours_times) + f"  median {statistics.median(ours_times):.1f}s"
          f"  min {min(ours_times):.1f}s")
    print("plain: " + " ".join(f"{t:.1f}s" for t in plain_times) + f"  median {statistics.median(plain_times):.1f}s"
          f"  min {min(plain_times):.1f}s")
    print(f"ratio of minima: {min(ours_times) / min(plain_times):.3f}")
    print(f"trainer_overhead: ratio={statistics.median(ours_times) / statistics.median(plain_times):.3f}")


if __name__ == "__main__":
    main()
