"""A trainer's /metrics text, parsed once (prometheus_client's text parser) for the readers that take its families:
progress.parse_metrics, checkpoints.parse_index and warnings.parse_warnings."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def parse(text: str) -> list[Metric]:
    """Every metric family of the exposition. The parser is a generator: a list lets each reader walk it, and a text
    that is not an exposition raises ValueError here, before any reader has seen part of it."""
    return list(text_string_to_metric_families(text))
