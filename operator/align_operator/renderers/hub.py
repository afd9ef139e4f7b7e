"""Hugging Face Hub settings of trainer pods: no telemetry, and offline when the job needs nothing from the hub.

TRL's trainers and huggingface_hub send an anonymous usage ping (HEAD {HF_ENDPOINT}/api/telemetry/...) unless
HF_HUB_DISABLE_TELEMETRY=1 or HF_HUB_OFFLINE=1; an air-gapped or privacy-bound cluster would see an outbound
attempt from every job. A job whose models and data all come from builtin://, file://, pvc://, s3:// or
job:// (always one of those: outputs never go to the hub) has no reason to reach the hub at all, so its pods
also run with HF_HUB_OFFLINE=1: a stray lookup fails at once instead of waiting on a network that is not there.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from align_api import AlignmentJob

from ..settings import Settings

#: Schemes that never reach the hub (job:// resolves to a job's output: file, pvc or s3, never the hub).
LOCAL_SCHEMES = ("builtin", "file", "pvc", "s3", "job")
#: Spec keys that hold a model, adapter or dataset location.
URI_KEYS = ("base", "init", "adapter", "uri", "model")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def is_hub_reference(uri: str) -> bool:
    """True for hf://org/name and bare hub ids; False for local schemes and paths (as align_api accepts them)."""
    if "://" in uri:
        return uri.split("://", 1)[0] not in LOCAL_SCHEMES
    return not (uri.startswith(("/", "./", "../", "~")) or uri.endswith(DATA_SUFFIXES))


def _locations(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in URI_KEYS and isinstance(item, str):
                # a judge's `model` names a model served by its endpoint, not something to download
                if not (key == "model" and value.get("endpoint")):
                    yield item
            else:
                yield from _locations(item)
    elif isinstance(value, list):
        for item in value:
            yield from _locations(item)


def hub_references(job: AlignmentJob) -> list[str]:
    """Every model, adapter or dataset location of the spec that the hub would serve, in spec order."""
    spec = job.to_dict()["spec"]
    spec.pop("output", None)  # written, never read from the hub
    return [uri for uri in _locations(spec) if is_hub_reference(uri)]


def hub_env(job: AlignmentJob, settings: Settings) -> list[dict[str, Any]]:
    """HF_HUB_DISABLE_TELEMETRY / HF_HUB_OFFLINE for the trainer container, as the settings ask."""
    items: list[dict[str, Any]] = []
    if settings.hf_disable_telemetry:
        items.append({"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"})
    offline = settings.hf_offline == "always" or (settings.hf_offline == "auto" and not hub_references(job))
    if offline:
        items.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    return items
