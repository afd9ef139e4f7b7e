"""Shared test configuration: make every test run offline and deterministic."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

REPO = Path(__file__).resolve().parent.parent


from tests.realk8s import realk8s  # noqa: E402,F401  (the real control plane fixture, one per test worker)


def grader_workers(root: int | None = None) -> list[int]:
    """Live grader jail worker processes (and their forked per-call children) descended from `root`
    (default: this process)."""
    root = os.getpid() if root is None else root

    def parent(pid: int) -> int:
        try:  # the field after "(comm)" is the state, then the parent pid
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        return 0 if fields[0] == "Z" else int(fields[1])  # a zombie is dead (reaped later by its parent)

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"_jail_worker.py" not in (entry / "cmdline").read_bytes():
                continue
        except OSError:
            continue
        pid = ancestor = int(entry.name)
        while ancestor > 1:
            ancestor = parent(ancestor)
            if ancestor == root:
                found.append(pid)
                break
    return sorted(found)


@pytest.fixture(autouse=True, scope="module")
def _grader_workers_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """No grader jail worker outlives the test module that started it: the process-wide pool is closed after
    every module, and under tests/unit a worker still alive after that (a pool nobody closed) fails the module."""
    yield
    jail = sys.modules.get("align_trainer.graders.jail")
    if jail is None:
        return
    jail.close_pool()
    if "unit" in Path(str(request.node.path)).relative_to(REPO).parts[:2]:
        deadline = time.monotonic() + 5  # SIGKILLed processes may take a moment to disappear
        while (left := grader_workers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"grader jail workers {left} outlived {request.node.nodeid}: close every JailPool"
