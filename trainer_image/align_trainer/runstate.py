"""The run state every checkpoint carries besides an algorithm's own (weights, optimizer, value head, KL
coefficient): each rank's random-number streams, the grader-health window (graders/health.py) and, for the
round-based loops, the metrics history. Restored on resume, a restarted run continues exactly as the
uninterrupted run would have: same samples, same grader-failure verdicts, same history.

Our own loops (ppo, rlaif, reft, tpo, dpo/rpo rounds) save it through `TrainContext.save_checkpoint` and read it
back in `online.resume_state`; HF/TRL trainers save their RNG themselves (rng_state_<rank>.pth) and get the
grader-health window from `checkpoints.install_atomic_saves` (RUN_STATE_FILE), restored in `run_hf_trainer`.
metrics.jsonl is cut back to the resumed checkpoint's step (`trim_metrics`): steps a killed run logged after its
last checkpoint are trained and logged again, once.
"""

from __future__ import annotations

import json
import logging
import random
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from . import distributed

log = logging.getLogger(__name__)

#: In an HF checkpoint directory: the grader-health windows of the ranks (JSON).
RUN_STATE_FILE = "align_run_state.json"
#: Key of the grader-health windows in a checkpoint's state (the job's GraderHealth is ctx.grader_health).
HEALTH_KEY = "grader_health"


def rng_state() -> dict[str, Any]:
    """This process's random-number streams: torch (CPU and CUDA), Python's and numpy's."""
    import numpy as np
    import torch
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def health_state(ctx: Any) -> dict[str, Any] | None:
    health = getattr(ctx, "grader_health", None)
    if health is None:
        return None
    return {"batches": [list(b) for b in health.batches], "first_errors": list(health.first_errors),
            "watched": health.watched, "samples": list(health.samples)}  # the no-learning-signal watch too


def set_health_state(ctx: Any, state: Mapping[str, Any] | None) -> None:
    health = getattr(ctx, "grader_health", None)
    if health is None or state is None:
        return
    health.batches = deque(tuple(b) for b in state["batches"])
    health.first_errors = list(state["first_errors"])
    health.watched, health.samples = int(state.get("watched", 0)), list(state.get("samples", []))


def capture(ctx: Any) -> dict[str, Any]:
    """Every rank's run state, gathered (a collective: every rank calls it at the same point). JSON-able parts
    go to align_state.json, the RNG tensors to state.pt."""
    return {"rng": distributed.gather([rng_state()]), HEALTH_KEY: distributed.gather([health_state(ctx)])}


def restore(ctx: Any, saved: Mapping[str, Any]) -> bool:
    """Put this rank's part of `saved` (from `capture`) back. True when the RNG streams were restored (False for
    a checkpoint written by another number of ranks, or before the RNG was saved: then the caller reseeds)."""
    ranks = distributed.world_size()
    restore_health(ctx, saved)
    streams = saved.get("rng")
    if isinstance(streams, list) and len(streams) == ranks:
        set_rng_state(streams[distributed.rank()])
        return True
    log.warning("checkpoint without this run's random-number state (%d rank(s) now): sampling is reseeded", ranks)
    return False


def save_hf_run_state(ctx: Any, checkpoint: Path) -> None:
    """RUN_STATE_FILE into an HF checkpoint being written (every rank calls it; rank 0 writes)."""
    healths = distributed.gather([health_state(ctx)])
    if distributed.is_main():
        (checkpoint / RUN_STATE_FILE).write_text(json.dumps({HEALTH_KEY: healths}), encoding="utf-8")


def restore_hf_run_state(ctx: Any, checkpoint: Path) -> None:
    path = checkpoint / RUN_STATE_FILE
    if path.is_file():
        restore_health(ctx, json.loads(path.read_text(encoding="utf-8")))


def restore_health(ctx: Any, saved: Mapping[str, Any]) -> None:
    """This rank's grader-health window from a checkpoint's gathered windows."""
    healths = saved.get(HEALTH_KEY)
    if isinstance(healths, list) and len(healths) == distributed.world_size():
        set_health_state(ctx, healths[distributed.rank()])


def trim_metrics(metrics_file: Path, step: int) -> list[dict[str, Any]]:
    """Drop the metrics.jsonl records after `step` (logged by a killed run after its last checkpoint; -1: all of
    them, the run starts over), atomically. Returns the records kept."""
    if not metrics_file.is_file():
        return []
    kept, dropped = [], 0
    for line in metrics_file.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by the kill
            dropped += 1
            continue
        if isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(record)
        else:
            dropped += 1
    if dropped:
        tmp = metrics_file.with_name(metrics_file.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        tmp.replace(metrics_file)
        log.info("metrics.jsonl: %d record(s) after step %d dropped (they are logged again)", dropped, step)
    return kept


__all__ = ["capture", "restore", "restore_hf_run_state", "save_hf_run_state", "trim_metrics"]
