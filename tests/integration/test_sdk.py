"""The Python SDK (align_operator.client): build, validate, submit, get, watch, wait, suspend, delete."""

from __future__ import annotations

import threading
from pathlib import Path
import time
from typing import Any

import pytest

from align_api import ManifestError
from align_operator.client import AlignClient, JobNotFound, build, phase_of

from .emulated_cluster import AJ, EmulatedCluster


@pytest.fixture(scope="module")
def cluster() -> Any:
    with EmulatedCluster() as emulated:
        yield emulated


def test_build_submit_watch_and_wait(cluster: EmulatedCluster) -> None:
    job = build("sdk-dpo", algorithm="dpo", model="builtin://tiny", train="examples/data/pref.jsonl",
                hyperparameters={"beta": 0.2, "maxSteps": 5}, labels={"team": "nlp"})
    client = AlignClient(host=cluster.url, namespace="sdk")
    obj, created = client.submit(job)
    assert created and obj["spec"]["hyperparameters"]["beta"] == 0.2
    assert client.get_job("sdk-dpo").spec.hyperparameters.max_steps == 5
    assert [o["metadata"]["name"] for o in client.list()] == ["sdk-dpo"]

    def operator() -> None:  # what the operator would write while the job runs
        for status in ({"phase": "Running", "progress": {"step": 2, "totalSteps": 5}}, {"phase": "Succeeded"}):
            time.sleep(0.3)
            client.custom.patch_namespaced_custom_object_status(
                "align.dev", "v1alpha1", "sdk", "alignmentjobs", "sdk-dpo", {"status": status},
                _content_type="application/merge-patch+json")

    threading.Thread(target=operator, daemon=True).start()
    seen = []
    for current in client.watch("sdk-dpo", timeout=20):
        seen.append(phase_of(current))
        if seen[-1] == "Succeeded":
            break
    assert seen[0] == "Pending" and seen[-1] == "Succeeded"
    assert phase_of(client.wait("sdk-dpo", timeout=5)) == "Succeeded"
    typed = client.get_job("sdk-dpo")
    assert typed.status is not None and typed.status.phase == "Succeeded"


def test_suspend_delete_and_errors(cluster: EmulatedCluster) -> None:
    with pytest.raises(ManifestError, match="beta"):
        build("bad", algorithm="dpo", model="builtin://tiny", train="p.jsonl", hyperparameters={"beta": 0})
    client = AlignClient(host=cluster.url, namespace="sdk")
    client.submit(build("sdk-sft", algorithm="sft", model="builtin://tiny", train="s.jsonl"))
    assert client.set_suspend("sdk-sft", True)["spec"]["runPolicy"]["suspend"] is True
    with pytest.raises(TimeoutError):
        client.wait("sdk-sft", timeout=1)
    client.delete("sdk-sft")
    assert cluster.get(AJ, "sdk", "sdk-sft") is None
    with pytest.raises(JobNotFound):
        client.get("sdk-sft")


def test_the_documented_example_runs(cluster: EmulatedCluster) -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    target = 'AlignClient(context="gpu-cluster", namespace="research")'
    assert target in code
    code = code.replace(target, f'AlignClient(host="{cluster.url}", namespace="research")')
    operator = AlignClient(host=cluster.url, namespace="research")

    def finish() -> None:
        for _ in range(100):
            if operator.exists("dpo-support-bot"):
                break
            time.sleep(0.05)
        for status in ({"phase": "Running", "progress": {"step": 3, "totalSteps": 10}},
                       {"phase": "Succeeded", "artifacts": {"adapter": "s3://my-bucket/out/final"}}):
            time.sleep(0.2)
            operator.custom.patch_namespaced_custom_object_status(
                "align.dev", "v1alpha1", "research", "alignmentjobs", "dpo-support-bot", {"status": status},
                _content_type="application/merge-patch+json")

    threading.Thread(target=finish, daemon=True).start()
    printed: list[str] = []
    exec(compile(code, "docs/sdk.md", "exec"), {"print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert printed[-1] == "Succeeded s3://my-bucket/out/final"
