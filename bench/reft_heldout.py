"""ReFT on the held-out split: reward of the base policy, after the SFT warm-up and after the RL stage, and the
final policy's KL to the reference (the warmed-up policy), for rlStage ppo and grpo over seeds.

Each run is `python -m align_trainer` on examples/reft.yaml (its task, its settings; only rlStage and seed
change) in its own single-threaded process. Rewards are the trainer's own probes (reft/initial_reward,
reft/warmup_reward, reft/final_reward, reft/final_kl in metrics.jsonl): numGenerations samples per held-out
prompt at the job's temperature, the same seed for every probe of a run.

    OMP_NUM_THREADS=1 python bench/reft_heldout.py [--seeds 1 2 3] [--stages ppo grpo] [--set key=value ...]

Last line: `reft_heldout: <stage>_<quantity>=<mean over seeds> ...` (quantities: base, warmup, rl, margin =
rl - warmup, kl).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "reft.yaml"
KEYS = {"base": "reft/initial_reward", "warmup": "reft/warmup_reward", "rl": "reft/final_reward", "kl": "reft/final_kl"}


def job(stage: str, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """examples/reft.yaml with absolute data paths, the stage, the seed and any overrides."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for split in doc["spec"]["data"].values():
        split["uri"] = str((EXAMPLE.parent / split["uri"]).resolve())
    doc["spec"]["hyperparameters"].update(rlStage=stage, seed=seed, **overrides)
    doc["spec"]["evaluation"] = {"enabled": False}
    return doc


def run_one(doc: dict[str, Any], workdir: Path) -> dict[str, float]:
    config, output = workdir / "job.yaml", workdir / "out"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGN_LOG_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, "-m", "align_trainer", "--config", str(config), "--output", str(output),
                           "--metrics-port", "-1"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"trainer failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    found: dict[str, float] = {}
    for line in (output / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        found.update({name: record[key] for name, key in KEYS.items() if key in record})
    return found


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--stages", nargs="+", default=["ppo", "grpo"])
    parser.add_argument("--set", nargs="*", default=[], help="hyperparameter overrides, key=value (JSON values)")
    args = parser.parse_args()
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    means: dict[str, float] = {}
    print(f"{'stage':6} {'seed':>4} {'base':>6} {'warmup':>7} {'rl':>6} {'margin':>7} {'kl':>7}")
    for stage in args.stages:
        runs = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix="reft-heldout-") as tmp:
                r = run_one(job(stage, seed, overrides), Path(tmp))
            r["margin"] = r["rl"] - r["warmup"]
            runs.append(r)
            print(f"{stage:6} {seed:>4} {r['base']:6.3f} {r['warmup']:7.3f} {r['rl']:6.3f} {r['margin']:+7.3f} "
                  f"{r['kl']:7.4f}", flush=True)
        for key in ("base", "warmup", "rl", "margin", "kl"):
            means[f"{stage}_{key}"] = sum(r[key] for r in runs) / len(runs)
        print(f"{stage:6} {'mean':>4} {means[f'{stage}_base']:6.3f} {means[f'{stage}_warmup']:7.3f} "
              f"{means[f'{stage}_rl']:6.3f} {means[f'{stage}_margin']:+7.3f} {means[f'{stage}_kl']:7.4f}", flush=True)
    print("reft_heldout: " + " ".join(f"{k}={v:.4f}" for k, v in means.items()) + f" seeds={len(args.seeds)}")


if __name__ == "__main__":
    main()
