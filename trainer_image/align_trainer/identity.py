"""Which run a working directory belongs to: a checkpoint resumes only its own run.

A working directory (checkpoints, final/, metrics) records the identity of the run that wrote it in
`run.json`: the AlignmentJob's uid (set by the operator as $ALIGN_JOB_UID; a re-created job with the same
name has a new one) and a hash of the spec fields that shape training (algorithm, model, data, grader,
hyperparameters). A restarted pod of the same job finds its own identity and resumes. Anything else (another
object with the same name on the same volume, a fixed manifest run again, a directory written before
identities existed) is never resumed: its artifacts are moved to `superseded/<id>/` with a log line, so
nothing is lost and nothing is mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from align_api import AlignmentJob

log = logging.getLogger(__name__)

ENV_JOB_UID = "ALIGN_JOB_UID"
RUN_FILE = "run.json"
SUPERSEDED_DIR = "superseded"
#: The spec fields that decide what training computes; output, resources, evaluation, run policy do not.
TRAINING_FIELDS = ("algorithm", "model", "data", "grader", "hyperparameters")
#: What a run leaves in its working directory (the cache stays: downloads are the same for every run).
RUN_ARTIFACTS = ("checkpoints", "final", "merged", "gate-failed", "evaluations", "metrics.jsonl", "status.json",
                 "evaluation.json", "report.md", "trained.json")


def spec_hash(job: AlignmentJob) -> str:
    spec = job.to_dict(defaults=True)["spec"]
    shaping = {key: spec.get(key) for key in TRAINING_FIELDS}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def current(job: AlignmentJob) -> dict[str, Any]:
    return {"job": job.name, "uid": os.environ.get(ENV_JOB_UID) or None, "specHash": spec_hash(job)}


def mismatch(recorded: dict[str, Any] | None, mine: dict[str, Any]) -> str | None:
    """Why a directory recorded as `recorded` is not this run's (None when it is)."""
    if recorded is None:
        return "it records no run identity"
    if recorded.get("uid") and mine.get("uid") and recorded["uid"] != mine["uid"]:
        return f"it belongs to job uid {recorded['uid']}, this is {mine['uid']}"
    if recorded.get("specHash") != mine["specHash"]:
        return "it was trained with different spec (algorithm, model, data, grader or hyperparameters)"
    return None


def read(output_dir: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((output_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def is_writer() -> bool:
    """Rank 0 (or a single process) owns the working directory; other ranks only read it."""
    return int(os.environ.get("RANK", "0")) == 0


def claim(output_dir: Path, job: AlignmentJob) -> bool:
    """Make `output_dir` this run's. Returns True when it already was (a restart: resume is allowed),
    False when it starts fresh (another run's artifacts were moved to superseded/, or there were none)."""
    mine = current(job)
    recorded = read(output_dir)
    present = [name for name in RUN_ARTIFACTS if (output_dir / name).exists()]
    problem = mismatch(recorded, mine)
    if problem is None:
        return True
    if present:
        target = output_dir / SUPERSEDED_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{(recorded or {}).get('specHash', 'unknown')}"
        log.warning("not resuming from %s: %s; its %s moved to %s", output_dir, problem, ", ".join(present), target)
        if is_writer():
            target.mkdir(parents=True, exist_ok=True)
            for name in present:
                shutil.move(str(output_dir / name), str(target / name))
    if is_writer():
        from .storage import write_json_atomic
        write_json_atomic(output_dir / RUN_FILE, mine)
    return False


__all__ = ["claim", "current", "mismatch", "spec_hash"]
