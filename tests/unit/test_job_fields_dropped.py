"""Older API servers prune Job fields they do not know (1.20: completionMode, podFailurePolicy, suspend, TTL);
the operator names what was dropped in a Warning event (tests/real/test_operator_real.py shows it on 1.20)."""

from __future__ import annotations

from align_operator.handlers.reconcile import dropped_fields


def test_job_fields_an_older_server_dropped_are_named() -> None:
    sent = {"spec": {"completionMode": "Indexed", "suspend": False, "podFailurePolicy": {"rules": []},
                     "backoffLimit": 3}}
    assert dropped_fields(sent, {"spec": {"backoffLimit": 3}}) == ["completionMode", "podFailurePolicy", "suspend"]
    assert dropped_fields(sent, sent) == []
