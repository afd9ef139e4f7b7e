"""Trainer overhead: `python -m align_trainer` vs a plain TRL script doing the same DPO run.

Same model (builtin://tiny, loaded from the same directory), same 64 preference pairs (the plain script
reads a TRL-format copy written beforehand, untimed), same LoRA, hyperparameters, logging every step and
checkpoints at the same interval; both save the final adapter. Each side runs as a fresh process and is
timed from start to exit (imports included); runs alternate, and the median of --repeat runs is used.
Ours also validates every row, serves Prometheus metrics, writes metrics.jsonl/status.json, renames
checkpoints into place and writes a model card.

    python bench/trainer_overhead.py [--steps 120] [--repeat 5] [--model builtin://smollm2-135m-instruct]

On a shared machine wall time mostly measures the neighbours, so each run also records the CPU time of the
child process tree (user + sys, from os.wait4's rusage), which other processes' load inflates far less. Three
figures are printed side by side: the ratio of medians (wall and CPU), and the median of the per-pair ratios
(run i of ours against run i of plain TRL, which ran right next to it).

Last line: `trainer_overhead: ratio=X cpu_ratio=Y` with X = median wall time (ours) / median wall time
(plain TRL) and Y the same for CPU time.
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
from dataclasses import dataclass
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


def ours_manifest(path: Path, steps: int, model: str = "builtin://tiny") -> Path:
    s = SETTINGS
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "bench-overhead"},
           "spec": {"algorithm": "dpo",
                    "model": {"base": model,
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


@dataclass(frozen=True)
class Run:
    wall: float  # seconds, start to exit
    cpu: float  # user + sys seconds of the child (and the children it waited for)
    rss: float = 0.0  # peak resident memory of the child, MB (ru_maxrss)


def timed(cmd: list[str], env: dict[str, str]) -> Run:
    """Run `cmd` to completion; its wall time and CPU time (os.wait4 reports the child's own rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return Run(wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss=usage.ru_maxrss / 1024)


def ratios(ours: list[Run], plain: list[Run], field: str) -> tuple[float, float]:
    """(median(ours) / median(plain), median over pairs of ours_i / plain_i) for `field` (wall or cpu)."""
    a = [getattr(r, field) for r in ours]
    b = [getattr(r, field) for r in plain]
    return statistics.median(a) / statistics.median(b), statistics.median(x / y for x, y in zip(a, b))


def row(name: str, runs: list[Run], field: str) -> str:
    values = [getattr(r, field) for r in runs]
    return (f"{name:<6}{field:<5}" + " ".join(f"{v:.1f}" for v in values)
            + f"  median {statistics.median(values):.2f}s  min {min(values):.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="builtin://tiny",
                        help="any spec.model.base; builtin://smollm2-135m-instruct for the real 135M model")
    args = parser.parse_args()
    from align_trainer.models import resolve_model
    # the same folder for both sides (a GGUF base is converted once here, untimed, and reused by ours)
    model_dir = resolve_model(args.model, base_dir=REPO, cache_dir=Path(tempfile.gettempdir()) / "bench-cache")
    # one intra-op thread: on a shared 2-core machine, waiting thread pools make run times swing 5x
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "ALIGN_LOG_LEVEL": "WARNING",
           "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ours_runs: list[Run] = []
    plain_runs: list[Run] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = ours_manifest(tmp_path / "job.yaml", args.steps, args.model)
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
                (ours_runs if name == "ours" else plain_runs).append(timed(cmd, env))
    load_after = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"load average {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"DPO on {args.model}, {args.steps} steps, batch {SETTINGS['batch']}, checkpoint every "
          f"{SETTINGS['save_every']}, {args.repeat} alternating runs each (imports included), "
          f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    for field in ("wall", "cpu"):
        print(row("ours", ours_runs, field))
        print(row("plain", plain_runs, field))
    for name, runs in (("ours", ours_runs), ("plain", plain_runs)):
        print(f"{name:<6}peak RSS {max(r.rss for r in runs):.0f} MB  "
              f"{args.steps / statistics.median(r.wall for r in runs):.3f} steps/s (wall, imports included)")
    wall, wall_pairs = ratios(ours_runs, plain_runs, "wall")
    cpu, cpu_pairs = ratios(ours_runs, plain_runs, "cpu")
    print(f"ratio of minima: wall {min(r.wall for r in ours_runs) / min(r.wall for r in plain_runs):.3f}  "
          f"cpu {min(r.cpu for r in ours_runs) / min(r.cpu for r in plain_runs):.3f}")
    print(f"median of paired ratios: wall {wall_pairs:.3f}  cpu {cpu_pairs:.3f}")
    print(f"trainer_overhead: ratio={wall:.3f} cpu_ratio={cpu:.3f}")

if __name__ == "__main__":
    main()
