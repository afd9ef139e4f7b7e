"""The README's quickstart: a DPO job end to end in the local cluster, then its plot.

`python -m align_localcluster.quickstart [MANIFEST | --real | --tiny] [--workdir DIR]` runs `alignctl local run`
(emulated API server, the real operator, the trainer as a local process) on `examples/dpo-smollm2.yaml` (the real
SmolLM2-135M-Instruct model; 2 min 46 s measured on 2 cores at load 3; --tiny: `examples/dpo.yaml` on builtin://tiny;
--real says the default explicitly), then `alignctl plot` on
the run's metrics, and prints the final status, the adapter path and the plot path. Exit code 0 only when
the job Succeeded and both the adapter and the plot exist.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = REPO / "examples" / "dpo.yaml"
#: --real: a real pretrained instruct model (builtin://smollm2-135m-instruct, a GGUF file from scripts/setup.sh)
REAL_MANIFEST = REPO / "examples" / "dpo-smollm2.yaml"


def _alignctl(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from align_operator.cli import main; main()", *args]
    return subprocess.run(command, text=True, stdout=subprocess.PIPE if capture else None, check=False)


def find_adapter(job: dict[str, Any], workdir: Path) -> Path | None:
    """The final adapter: from status.artifacts when it is a local path, else in the local cluster's pod volumes."""
    adapter = (((job.get("status") or {}).get("artifacts") or {}).get("adapter") or "").removeprefix("file://")
    if adapter and Path(adapter).is_dir():
        return Path(adapter)
    name = job["metadata"]["name"]
    found = sorted(workdir.glob(f"pods/*/{name}-trainer-*/volumes/**/final/adapter_config.json"))
    return found[-1].parent if found else None


def run(manifest: Path, workdir: Path) -> int:
    workdir = workdir.resolve()
    print(f"== alignctl local run {manifest}", flush=True)
    result = _alignctl("local", "run", str(manifest), "-o", "json", "--workdir", str(workdir), capture=True)
    try:
        job = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(result.stdout)
        print("quickstart: the local run did not print a final AlignmentJob", file=sys.stderr)
        return 1
    status = job.get("status") or {}
    phase = status.get("phase")
    adapter = find_adapter(job, workdir)
    plot_path = None
    if adapter is not None and (adapter.parent / "metrics.jsonl").exists():
        plot_path = adapter.parent / "metrics.png"
        print(f"== alignctl plot {adapter.parent}", flush=True)
        if _alignctl("plot", str(adapter.parent), "-o", str(plot_path)).returncode != 0:
            plot_path = None
    progress = status.get("progress") or {}
    metrics = status.get("metrics") or {}
    print("\n== final status")
    print(f"   job:       {job['metadata']['name']} ({job['spec']['algorithm']} on {job['spec']['model']['base']})")
    print(f"   phase:     {phase}")
    print(f"   progress:  step {progress.get('step')}/{progress.get('totalSteps')} ({progress.get('percent')}%)")
    for key in ("loss", "rewards_margins", "rewards_accuracies"):
        if metrics.get(key) is not None:
            print(f"   {key + ':':<10} {metrics[key]:.4f}")
    for key, value in (status.get("evaluation") or {}).items():
        if isinstance(value, (int, float)):
            print(f"   eval {key}: {value:.4f}")
    for condition in status.get("conditions") or []:
        print(f"   condition: {condition['type']}={condition['status']} ({condition['reason']})")
    if status.get("lastError"):
        print(f"   lastError: {status['lastError'].get('reason')}: {status['lastError'].get('message')}")
    print(f"   adapter:   {adapter or '(none)'}")
    print(f"   plot:      {plot_path or '(none)'}")
    ok = phase == "Succeeded" and adapter is not None and plot_path is not None and plot_path.exists()
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", nargs="?", type=Path, default=None)
    parser.add_argument("--real", action="store_true",
                        help=f"run {REAL_MANIFEST.relative_to(REPO)} (SmolLM2-135M-Instruct; the default)")
    parser.add_argument("--tiny", action="store_true",
                        help=f"run {DEFAULT_MANIFEST.relative_to(REPO)} on builtin://tiny (random weights; faster)")
    parser.add_argument("--workdir", type=Path, default=Path(".align-local/quickstart"))
    args = parser.parse_args(argv)
    if sum((args.manifest is not None, args.real, args.tiny)) > 1:
        parser.error("give one of a manifest, --real or --tiny")
    return run(choose_manifest(args.manifest, tiny=args.tiny), args.workdir)


def choose_manifest(manifest: Path | None, *, tiny: bool) -> Path:
    """The user's manifest, else the tiny example when asked, else the real-model example (the README's quickstart:
    a real pretrained model whose answers visibly change fits in about 3 minutes on 2 cores)."""
    return manifest or (DEFAULT_MANIFEST if tiny else REAL_MANIFEST)


if __name__ == "__main__":
    raise SystemExit(main())
