"""Pure renderers: an AlignmentJob (plus operator settings) in, Kubernetes manifests out. No I/O here."""

from .configmap import render_configmap
from .job import render_job
from .names import child_labels, config_name, job_name, service_name
from .service import render_service

__all__ = ["child_labels", "config_name", "job_name", "render_configmap", "render_job", "render_service",
           "service_name"]
