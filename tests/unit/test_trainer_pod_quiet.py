"""Trainer pods are quiet by default: no hub telemetry, and offline when nothing of the job is on the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from align_api import load_file, validate_document
from align_operator.renderers import render_job
from align_operator.renderers.hub import hub_references, is_hub_reference
from align_operator.settings import Settings

REPO = Path(__file__).resolve().parents[2]
LOCAL_MODEL = {"base": "builtin://tiny"}
LOCAL_DATA = {"train": {"uri": "s3://bucket/pairs.jsonl"}, "eval": {"uri": "pvc://data/eval.jsonl"}}


def pod_env(settings: Settings | None = None, **spec: Any) -> dict[str, str]:
    body = {"algorithm": "dpo", "model": LOCAL_MODEL, "data": LOCAL_DATA, **spec}
    job = validate_document({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                             "metadata": {"name": "quiet", "namespace": "team"}, "spec": body})
    rendered = render_job(job, "team", settings or Settings())
    return {e["name"]: e.get("value") for e in rendered["spec"]["template"]["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("base", ["builtin://tiny", "file:///models/qwen", "pvc://models/qwen", "s3://models/qwen"])
def test_local_model_and_data_run_offline_without_telemetry(base: str) -> None:
    env = pod_env(model={"base": base, "adapter": {"init": "job://sft-run"},
                         "reference": {"kind": "adapter", "adapter": "pvc://models/ref"}})
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1" and env["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("spec", [
    {"model": {"base": "Qwen/Qwen2.5-0.5B-Instruct"}},
    {"model": {"base": "hf://Qwen/Qwen2.5-0.5B-Instruct"}},
    {"data": {"train": {"uri": "hf://trl-lib/ultrafeedback_binarized"}}},
    {"data": {"train": {"uri": "s3://bucket/pairs.jsonl"}, "eval": {"uri": "trl-lib/ultrafeedback_binarized"}}},
    {"model": {"base": "builtin://tiny", "adapter": {"init": "org/sft-adapter"}}},
])
def test_anything_on_the_hub_keeps_it_reachable_but_telemetry_stays_off(spec: dict[str, Any]) -> None:
    env = pod_env(**spec)
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1" and "HF_HUB_OFFLINE" not in env


def test_graders_count_a_local_judge_model_but_not_a_model_served_by_an_endpoint() -> None:
    judge = {"type": "score_model", "name": "judge", "range": [0, 10],
             "input": [{"role": "user", "content": "{{sample.output_text}}"}]}
    served = pod_env(algorithm="rlaif", data={"train": {"uri": "file:///data/rft.jsonl", "format": "openai-rft"}},
                     grader={**judge, "model": "gpt-4o-mini", "endpoint": {"base_url": "http://vllm:8000/v1"}})
    assert served["HF_HUB_OFFLINE"] == "1"
    local = pod_env(algorithm="rlaif", data={"train": {"uri": "file:///data/rft.jsonl", "format": "openai-rft"}},
                    grader={**judge, "model": "org/judge-7b"})
    assert "HF_HUB_OFFLINE" not in local
    reward = pod_env(algorithm="ppo", data={"train": {"uri": "file:///data/rft.jsonl", "format": "openai-rft"}},
                     grader={"type": "reward_model", "name": "rm", "model": "job://reward-tiny"})
    assert reward["HF_HUB_OFFLINE"] == "1"


def test_settings_turn_each_variable_on_or_off() -> None:
    hub = {"model": {"base": "Qwen/Qwen2.5-0.5B-Instruct"}}
    loud = pod_env(Settings(hf_disable_telemetry=False, hf_offline="never"))
    assert "HF_HUB_DISABLE_TELEMETRY" not in loud and "HF_HUB_OFFLINE" not in loud
    assert pod_env(Settings(hf_offline="always"), **hub)["HF_HUB_OFFLINE"] == "1"
    parsed = Settings.from_env({"ALIGN_OPERATOR_HF_DISABLE_TELEMETRY": "false", "ALIGN_OPERATOR_HF_OFFLINE": "never"})
    assert parsed.hf_disable_telemetry is False and parsed.hf_offline == "never"
    assert Settings.from_env(Settings().to_env()) == Settings()
    with pytest.raises(ValueError, match="ALIGN_OPERATOR_HF_OFFLINE"):
        Settings.from_env({"ALIGN_OPERATOR_HF_OFFLINE": "sometimes"})


def test_every_example_runs_offline() -> None:
    """The shipped examples use builtin:// models and local data: none of their pods needs the hub."""
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for job in load_file(path):
            assert hub_references(job) == [], path.name
            env = {e["name"]: e.get("value") for e in
                   render_job(job, "team", Settings())["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env.get("HF_HUB_OFFLINE") == "1", path.name


def test_hub_reference_classification() -> None:
    for uri in ("Qwen/Qwen2.5-0.5B", "gpt2", "hf://org/name", "org/name@main"):
        assert is_hub_reference(uri), uri
    for uri in ("builtin://tiny", "file:///x", "pvc://c/p", "s3://b/k", "job://x", "/abs/dir", "./rel",
                "data/train.jsonl", "x.parquet"):
        assert not is_hub_reference(uri), uri
