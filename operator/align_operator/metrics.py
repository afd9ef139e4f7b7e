"""The operator's own Prometheus metrics (prefix align_operator_)."""

from __future__ import annotations

from typing import Iterator

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from align_api.constants import Phase

RECONCILE_SECONDS = Histogram(
    "align_operator_reconcile_duration_seconds", "Time spent in one handler invocation.", ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ERRORS = Counter("align_operator_errors_total", "Errors seen by the operator, by reason.", ["reason"])
SCRAPES = Counter("align_operator_trainer_scrapes_total", "Scrapes of trainer /metrics endpoints.", ["result"])
TRANSITIONS = Counter("align_operator_phase_transitions_total", "AlignmentJob phase changes.", ["phase"])

#: (namespace, name) -> phase, kept by the handlers; exported as align_operator_jobs{phase}.
PHASES: dict[tuple[str, str], str] = {}


class _JobsByPhase(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("align_operator_jobs", "AlignmentJobs known to the operator, by phase.",
                                   labels=["phase"])
        counts = {phase.value: 0 for phase in Phase}
        for phase in list(PHASES.values()):
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family


#: (namespace, name) -> status.usage, from the stored AlignmentJobs (so it survives an operator restart).
USAGE: dict[tuple[str, str], dict[str, float]] = {}
#: status.usage key -> (metric name, help, factor to the metric's unit). Prometheus names carry base units
#: (promtool refuses "_hours"/"_minutes"), so hours and minutes of status.usage are exported as seconds.
USAGE_SERIES = {
    "gpuHours": ("align_operator_job_gpu_seconds", "GPU-seconds the job's trainer pods used (running time x GPUs; "
                 "status.usage.gpuHours x 3600).", 3600.0),
    "podHours": ("align_operator_job_pod_seconds", "Running time of the job's trainer pods, in seconds.", 3600.0),
    "wallClockMinutes": ("align_operator_job_wall_clock_seconds", "Running time of the job's rank-0 pod, in seconds.",
                         60.0),
    "budgetUsed": ("align_operator_job_budget_used_ratio",
                   "Largest fraction of a runPolicy budget used (1 pauses the job: BudgetExhausted).", 1.0),
}


class _JobUsage(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        for key, (metric, text, factor) in USAGE_SERIES.items():
            family = GaugeMetricFamily(metric, text, labels=["namespace", "name"])
            for (namespace, name), usage in list(USAGE.items()):
                if usage.get(key) is not None:
                    family.add_metric([namespace, name], float(usage[key]) * factor)
            yield family


def record_usage(namespace: str, name: str, usage: dict[str, float] | None) -> None:
    if usage:
        USAGE[(namespace, name)] = {k: usage[k] for k in USAGE_SERIES if isinstance(usage.get(k), (int, float))}
    else:
        USAGE.pop((namespace, name), None)


_COLLECTOR = _JobsByPhase()
REGISTRY.register(_COLLECTOR)
REGISTRY.register(_JobUsage())
_SERVED: set[int] = set()


def serve(port: int) -> None:
    """Expose /metrics on `port` (once per process; 0 = off)."""
    if port and port not in _SERVED:
        start_http_server(port)
        _SERVED.add(port)


def record_phase(namespace: str, name: str, phase: str | None) -> None:
    key = (namespace, name)
    if phase is None:
        PHASES.pop(key, None)
        return
    if PHASES.get(key) != phase:
        TRANSITIONS.labels(phase).inc()
    PHASES[key] = phase
