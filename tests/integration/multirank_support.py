"""Start the trainer with several ranks (torchrun through align_trainer.launch, gloo on CPU) and find its ranks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from tests.integration.trainer_support import DATA, manifest

LETTERS = {"type": "python", "name": "letters",
           "source": "def grade(sample, item):\n    text = sample['output_text']\n"
                     "    return sum(c.islower() for c in text) / max(1, len(text))\n"}
#: Few steps, tiny batches: each rank's share of a step is one prompt/pair.
RL_HP = {"batchSize": 2, "numGenerations": 2, "maxCompletionLength": 4, "temperature": 0.5, "learningRate": 0.05,
         "maxSteps": 3, "loggingSteps": 1}


def job(tmp_path: Path, name: str, algorithm: str, *, processes: int = 2, hp: dict[str, Any] | None = None,
        **spec: Any) -> Path:
    """A tiny manifest with `processes` CPU ranks per pod."""
    online = algorithm in ("grpo", "ppo", "rlaif", "tpo", "rloo", "online-dpo", "reft")
    train = "rft.openai.jsonl" if online else "preference.openai.jsonl"
    path = manifest(tmp_path, name, algorithm, train, hp={**(RL_HP if online else {"batchSize": 2, "maxSteps": 3}),
                                                           **(hp or {})},
                    **({"grader": LETTERS} if online else {}), **spec)
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["data"]["train"]["format"] = "openai-rft" if online else "openai-preference"
    doc["spec"]["resources"] = {"gpusPerNode": 0, "processesPerNode": processes, **doc["spec"].get("resources", {}),
                                **spec.get("resources", {})}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ALIGN_TERMINATION_LOG": os.devnull, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(config: Path, output: Path, *, nproc: int = 2, nnodes: int = 1, node_rank: int = 0,
           port: int | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    """`python -m align_trainer.launch` as the operator renders it (standalone, or one node of several)."""
    rendezvous = ["--standalone"] if nnodes == 1 else [
        f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--master-addr=127.0.0.1", f"--master-port={port}"]
    cmd = [sys.executable, "-m", "align_trainer.launch", f"--nproc-per-node={nproc}", "--max-restarts=0",
           *rendezvous, "-m", "align_trainer", "--config", str(config), "--output", str(output), "--metrics-port", "-1"]
    out = (log or output.with_suffix(".log")).open("wb")
    return subprocess.Popen(cmd, env=env(), stdout=out, stderr=subprocess.STDOUT)


def rank_pids(launcher: int) -> dict[int, int]:
    """{RANK: pid} of the trainer processes started by a launcher (from their environment)."""
    found: dict[int, int] = {}
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(launcher)], capture_output=True, text=True).stdout
    for pid in map(int, children.split()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = pid
    return found


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def logged_steps(output: Path) -> int:
    metrics = output / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


__all__ = ["DATA", "LETTERS", "env", "free_port", "job", "launch", "logged_steps", "rank_pids", "wait_for"]
