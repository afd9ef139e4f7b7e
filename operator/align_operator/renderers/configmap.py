"""The trainer config: the manifest with every default resolved, as the trainer's --config file."""

from __future__ import annotations

from typing import Any

import yaml

from align_api import AlignmentJob
from align_api.constants import CONFIG_FILE_NAME

from .names import child_labels, config_name


def trainer_config(job: AlignmentJob) -> dict[str, Any]:
    """The document the trainer validates and runs: apiVersion, kind, a small metadata, the resolved spec."""
    data = job.to_dict(defaults=True)
    data.pop("status", None)
    meta = data.get("metadata") or {}
    data["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels") if meta.get(k)}
    return data


#: libyaml's emitter when PyYAML has it: the pure-Python one took 12 ms per job, a third of the operator's CPU per
#: AlignmentJob in a burst (bench/operator_scale.py --real under cProfile). Same document, other line folding.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_config(config: dict[str, Any]) -> str:
    return yaml.dump(config, Dumper=_DUMPER, sort_keys=False, allow_unicode=False)


def render_configmap(job: AlignmentJob, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_name(job.name), "namespace": namespace, "labels": child_labels(job, "config")},
        "data": {CONFIG_FILE_NAME: dump_config(trainer_config(job))},
    }
