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


_COLLECTOR = _JobsByPhase()
REGISTRY.register(_COLLECTOR)
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
