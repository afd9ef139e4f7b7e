"""Helpers for the trainer integration tests: write a manifest, run the entry point, read metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

DATA = REPO / "examples" / "data"


def manifest(tmp_path: Path, name: str, algorithm: str, train: str, *, eval_: str | None = None,
             hp: dict[str, Any] | None = None, model: dict[str, Any] | None = None, **spec: Any) -> Path:
    """A small AlignmentJob on builtin://tiny, written to tmp_path/<name>.yaml (data by absolute path)."""
    data: dict[str, Any] = {"train": {"uri": str(DATA / train)}}
    if eval_:
        data["eval"] = {"uri": str(DATA / eval_)}
    doc = {
        "apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": name},
        "spec": {
            "algorithm": algorithm,
            "model": {"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16, "dropout": 0.0}, **(model or {})},
            "data": data,
            "hyperparameters": {"batchSize": 8, "learningRate": 0.005, "maxLength": 96, "maxSteps": 16,
                                "loggingSteps": 1, **(hp or {})},
            "resources": {"gpusPerNode": 0},
            "checkpoints": {"everySteps": 8, "keep": 1},
            "evaluation": {"enabled": False},
            **spec,
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read_metrics(output: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def series(records: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in records if key in r and not math.isnan(r[key])]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)

