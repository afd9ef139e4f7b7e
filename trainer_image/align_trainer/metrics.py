"""Training metrics: Prometheus gauges, metrics.jsonl, a progress file, divergence detection.

Gauges are `align_trainer_<name>{job, split}` for the series the operator and dashboards read (loss,
learning_rate, grad_norm, rewards_*, logps_*, tokens_per_second, step, total_steps, epoch), plus
`align_trainer_metric{job, split, name}` for any other scalar a trainer logs (kl, entropy, reward, ...).
Values are exported raw: a NaN loss shows up as NaN, and then the run stops with Diverged.
`align_trainer_warning{job, reason, message} 1` carries a warning the run goes on with (e.g. NoLearningSignal);
the operator turns it into an event and a condition.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from .errors import Diverged
from .numerics import RESIDUAL_KEY, ResidualWatch
from .storage import write_json_atomic
from .termination import WARNING_CHARS

log = logging.getLogger(__name__)

#: Seconds between two "Running" writes of status.json (terminal states are written at once).
STATUS_INTERVAL = 2.0
PREFIX = "align_trainer_"
#: TRL log key -> gauge name (without prefix). Eval keys ("eval_" + key) map to the same gauge, split="eval".
NAMED = {
    "loss": "loss", "learning_rate": "learning_rate", "grad_norm": "grad_norm",
    "rewards/chosen": "rewards_chosen", "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margins", "rewards/accuracies": "rewards_accuracies",
    "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected",
    "logits/chosen": "logits_chosen", "logits/rejected": "logits_rejected",
    "accuracy": "accuracy", "tokens_per_second": "tokens_per_second",
}
PROGRESS = ("step", "total_steps", "epoch")
#: A non-finite value of these stops the run (a retry from the same checkpoint would diverge again). The
#: residual-stream RMS catches an overflow that the model's norms turn into zeros instead of NaN (numerics.py).
DIVERGENCE_KEYS = ("loss", "grad_norm", "eval_loss", RESIDUAL_KEY, "eval_" + RESIDUAL_KEY)
_SKIP = {"total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
         "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "step", "epoch"}


def gauge_name(key: str) -> str:
    """Prometheus-safe metric suffix for a logged key ("rewards/margins" -> "rewards_margins")."""
    return "".join(c if c.isalnum() else "_" for c in key).strip("_").lower()


def split_key(key: str) -> tuple[str, str]:
    """("eval", "loss") for "eval_loss"; ("train", key) otherwise."""
    return ("eval", key[len("eval_"):]) if key.startswith("eval_") else ("train", key)


def is_bad(value: float) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


class Metrics:
    """contracts.MetricsSink: one per job. `port=None` serves nothing; `port=0` picks a free port (tests)."""

    def __init__(self, job: str, metrics_file: Path | None, *, port: int | None = None,
                 status_file: Path | None = None, registry: CollectorRegistry | None = None) -> None:
        self.job = job
        self.metrics_file, self.status_file = metrics_file, status_file
        self._status_written = float("-inf")  # monotonic time of the last "Running" status.json
        self.registry = registry or CollectorRegistry()
        labels = ["job", "split"]
        self.gauges: dict[str, Gauge] = {
            name: Gauge(PREFIX + name, f"Latest {key} logged by the trainer.", labels, registry=self.registry)
            for key, name in NAMED.items()}
        for name in PROGRESS:
            self.gauges[name] = Gauge(PREFIX + name, f"Training {name.replace('_', ' ')}.", ["job"],
                                      registry=self.registry)
        self.generic = Gauge(PREFIX + "metric", "Any other scalar logged by the trainer.", labels + ["name"],
                             registry=self.registry)
        self.warnings = Gauge(PREFIX + "warning", "1 while the trainer reports this warning (reason, message).",
                              ["job", "reason", "message"], registry=self.registry)
        self.info = Gauge(PREFIX + "up", "1 while the trainer process serves metrics.", ["job"], registry=self.registry)
        self.checkpoint = Gauge(PREFIX + "checkpoint", "Kept checkpoints: save time (unix seconds) by step.",
                                ["job", "step"], registry=self.registry)
        self.checkpoint_metric = Gauge(PREFIX + "checkpoint_metric", "Metrics of each kept checkpoint (eval_ "
                                       "prefix: evaluation at that step).", ["job", "step", "name"],
                                       registry=self.registry)
        self.info.labels(job=job).set(1)
        self.latest: dict[str, float] = {}
        self.state: dict[str, Any] = {"job": job, "step": 0, "total_steps": None, "epoch": None}
        self.server: Any = None
        self.port: int | None = None
        self.residual = ResidualWatch()
        if port is not None:
            self.server, _ = start_http_server(port, registry=self.registry)
            self.port = self.server.server_port
            log.info("metrics on :%d/metrics", self.port)
        if metrics_file is not None:
            metrics_file.parent.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if self.server is not None:
            # shutdown() waits up to the serve loop's 0.5 s poll; nobody needs to wait for that
            server, self.server = self.server, None
            threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True).start()

    def watch(self, model: Any) -> None:
        """Watch a trainable model's forward passes for activation overflow (numerics.ResidualWatch); the
        peak is logged with the next set of metrics."""
        self.residual.attach(model)

    def _set(self, key: str, value: float) -> None:
        split, base = split_key(key)
        name = NAMED.get(base)
        if name is not None:
            self.gauges[name].labels(job=self.job, split=split).set(value)
        else:
            self.generic.labels(job=self.job, split=split, name=gauge_name(base)).set(value)

    def log(self, values: Mapping[str, Any], *, step: int, epoch: float | None = None) -> None:
        scalars = {k: float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _SKIP}
        peak = self.residual.read() if scalars else None
        if peak is not None:  # from the forward passes since the last log (eval ones for an eval log)
            scalars[("eval_" if any(k.startswith("eval_") for k in scalars) else "") + RESIDUAL_KEY] = peak
        for key, value in scalars.items():
            self._set(key, value)
        self.latest.update(scalars)
        if scalars and self.metrics_file is not None:
            record = {"time": round(time.time(), 3), "step": step, "epoch": epoch, **scalars}
            with self.metrics_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")  # NaN/Infinity stay visible (Python's json reads them)
        bad = [k for k in DIVERGENCE_KEYS if k in scalars and is_bad(scalars[k])]
        if bad:
            self.write_status(state="Diverged")
            why = (" (the residual stream overflowed float32: the model's norms now output zeros)"
                   if any(k.endswith(RESIDUAL_KEY) for k in bad) else "")
            raise Diverged(f"training diverged at step {step}: " +
                           ", ".join(f"{k}={scalars[k]}" for k in bad) + why +
                           " (try a lower learningRate, a smaller maxGradNorm or fp32 precision)")

    def warn(self, reason: str, message: str) -> None:
        """A warning the run goes on with: the warning gauge (the operator's event and condition) and
        status.json's `warnings` (local runs)."""
        self.warnings.labels(job=self.job, reason=reason, message=message[:WARNING_CHARS]).set(1)
        self.state.setdefault("warnings", []).append({"reason": reason, "message": message})
        self.write_status(state="Running")

    def reported_warnings(self) -> list[dict[str, str]]:
        return list(self.state.get("warnings") or [])

    def progress(self, *, step: int, total_steps: int | None, epoch: float | None = None) -> None:
        self.gauges["step"].labels(job=self.job).set(step)
        if total_steps is not None:
            self.gauges["total_steps"].labels(job=self.job).set(total_steps)
        if epoch is not None:
            self.gauges["epoch"].labels(job=self.job).set(epoch)
        self.state.update(step=step, total_steps=total_steps, epoch=epoch)

    def checkpoints(self, records: list[dict[str, Any]]) -> None:
        """Export the kept checkpoints (checkpoint_index.index): the series of rotated-away ones go."""
        self.checkpoint.clear()
        self.checkpoint_metric.clear()
        for record in records:
            step = str(record["step"])
            saved = datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
            self.checkpoint.labels(job=self.job, step=step).set(saved)
            for name, value in {**record.get("metrics", {}), **record.get("evaluation", {})}.items():
                self.checkpoint_metric.labels(job=self.job, step=step, name=gauge_name(name)).set(value)

    def write_status(self, **extra: Any) -> None:
        """status.json in the output: progress and latest metrics for local runs (atomic replace). A "Running"
        update is written at most every STATUS_INTERVAL seconds (an atomic replace per log was the largest
        per-log cost of the trainer; a person or `alignctl` polling the file needs no more); every other
        state (Succeeded, Failed, Diverged, ...) is written at once."""
        if self.status_file is None:
            return
        if extra.get("state") == "Running":
            now = time.monotonic()
            if now - self._status_written < STATUS_INTERVAL:
                return
            self._status_written = now
        data = {**self.state, **extra, "metrics": self.latest, "updated": round(time.time(), 3)}
        write_json_atomic(self.status_file, data, indent=1)


def tokens_per_second(previous: tuple[float, float] | None, tokens: float, now: float) -> float | None:
    """Throughput between two logs from a cumulative token count."""
    if previous is None:
        return None
    t0, n0 = previous
    return (tokens - n0) / (now - t0) if now > t0 and tokens >= n0 else None
