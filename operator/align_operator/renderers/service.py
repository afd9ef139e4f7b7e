"""The headless Service: stable DNS for trainer pods, so rank 0 is `<job>-0.<service>` for torchrun."""

from __future__ import annotations

from typing import Any

from align_api import AlignmentJob

from .names import JOB_LABEL, child_labels, service_name

RENDEZVOUS_PORT = 29500


def render_service(job: AlignmentJob, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(job.name), "namespace": namespace, "labels": child_labels(job)},
        "spec": {
            "clusterIP": "None",
            # Ranks must find each other before any of them is Ready.
            "publishNotReadyAddresses": True,
            "selector": {JOB_LABEL: job.name, "app.kubernetes.io/component": "trainer"},
            "ports": [
                {"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT, "protocol": "TCP"},
                {"name": "metrics", "port": job.spec.metrics.port, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
