"""A corpus of invalid manifests: each must be rejected with the offending field's path in the message."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from align_api import ManifestError, load_text

BASE: dict[str, Any] = {
    "apiVersion": "align.dev/v1alpha1",
    "kind": "AlignmentJob",
    "metadata": {"name": "job"},
    "spec": {
        "algorithm": "dpo",
        "model": {"base": "builtin://tiny"},
        "data": {"train": {"uri": "data/pairs.jsonl"}},
    },
}
GRPO = {"algorithm": "grpo", "grader": {"type": "string_check", "name": "g", "input": "{{sample.output_text}}",
                                        "reference": "{{item.answer}}", "operation": "eq"}}


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


_DELETE = object()

# (case id, {dotted path: value}, expected path in the message, expected words in the message)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("wrong-api-version", {"apiVersion": "align.dev/v1"}, "apiVersion", "align.dev/v1alpha1"),
    ("wrong-kind", {"kind": "Job"}, "kind", "AlignmentJob"),
    ("no-name", {"metadata": {}}, "metadata", "name"),
    ("bad-name", {"metadata.name": "Bad_Name"}, "metadata.name", "pattern"),
    ("unknown-spec-key", {"spec.algoritm": "dpo"}, "spec.algoritm", "unknown field"),
    ("unknown-algorithm", {"spec.algorithm": "dpo2"}, "spec.algorithm", "sft"),
    ("missing-model", {"spec.model": _DELETE}, "spec.model", "required"),
    ("missing-data", {"spec.data": _DELETE}, "spec.data", "required"),
    ("bad-scheme", {"spec.model.base": "ftp://host/model"}, "spec.model.base", "unsupported scheme"),
    ("unknown-builtin", {"spec.model.base": "builtin://huge"}, "spec.model.base", "builtin://tiny"),
    ("job-uri-as-base", {"spec.model.base": "job://sft"}, "spec.model.base", "job://"),
    ("bad-s3", {"spec.model.base": "s3://B"}, "spec.model.base", "s3://bucket"),
    ("bad-pvc", {"spec.model.base": "pvc://Claim_1/x"}, "spec.model.base", "pvc://"),
    ("lora-rank-zero", {"spec.model.adapter.r": 0}, "spec.model.adapter.r", "greater than or equal to 1"),
    ("lora-dropout-one", {"spec.model.adapter.dropout": 1.0}, "spec.model.adapter.dropout", "less than 1"),
    ("target-modules-string", {"spec.model.adapter.targetModules": "all-linear"}, "spec.model.adapter.targetModules", "list"),
    ("reference-adapter-without-uri", {"spec.model.reference.kind": "adapter"}, "spec.model.reference.adapter", "needs reference.adapter"),
    ("reference-unknown-kind", {"spec.model.reference.kind": "copy"}, "spec.model.reference.kind", "base"),
    ("quantization-3-bits", {"spec.model.quantization": {"bits": 3}}, "spec.model.quantization.bits", "4"),
    ("quantization-on-cpu", {"spec.model.quantization": {"bits": 4}, "spec.resources": {"gpusPerNode": 0}},
     "spec.model.quantization", "GPUs"),
    ("unknown-data-format", {"spec.data.train.format": "csv"}, "spec.data.train.format", "openai-chat"),
    ("unknown-canonical-field", {"spec.data.train.fields": {"question": "q"}}, "spec.data.train.fields", "canonical"),
    ("negative-learning-rate", {"spec.hyperparameters": {"learningRate": -0.1}}, "spec.hyperparameters.learningRate", "greater than 0"),
    ("beta-zero", {"spec.hyperparameters": {"beta": 0}}, "spec.hyperparameters.beta", "greater than 0"),
    ("epochs-zero", {"spec.hyperparameters": {"epochs": 0}}, "spec.hyperparameters.epochs", "greater than or equal to 1"),
    ("unknown-hyperparameter", {"spec.hyperparameters": {"learningRat": 1e-4}}, "spec.hyperparameters.learningRat", "unknown field"),
    ("hyperparameter-of-other-algorithm", {"spec.hyperparameters": {"numGenerations": 8}},
     "spec.hyperparameters.numGenerations", "not used by algorithm 'dpo'"),
    ("bad-dpo-loss-type", {"spec.hyperparameters": {"lossType": "squared"}}, "spec.hyperparameters.lossType", "sigmoid"),
    ("warmup-ratio-too-big", {"spec.hyperparameters": {"warmupRatio": 0.9}}, "spec.hyperparameters.warmupRatio", "0.5"),
    ("grpo-without-grader", {"spec.algorithm": "grpo"}, "spec.grader", "required"),
    ("grader-unknown-type", {**GRPO, "grader": {"type": "regex_check"}}, "spec.grader", "string_check"),
    ("grader-bad-operation", {**GRPO, "grader": {**GRPO["grader"], "operation": "contains"}}, "spec.grader.operation", "like"),
    ("grader-bad-template", {**GRPO, "grader": {**GRPO["grader"], "reference": "{{answer}}"}}, "spec.grader.reference", "item.<field>"),
    ("reward-model-max-length-zero", {**GRPO, "grader": {"type": "reward_model", "name": "rm", "model": "file:///m",
                                                         "max_length": 0}},
     "spec.grader.max_length", "greater than or equal to 1"),
    ("grader-unknown-key", {**GRPO, "grader": {**GRPO["grader"], "pass_treshold": 1}}, "spec.grader.pass_treshold", "unknown field"),
    ("similarity-bad-metric", {**GRPO, "grader": {"type": "text_similarity", "input": "{{sample.output_text}}",
                                                  "reference": "{{item.a}}", "evaluation_metric": "rouge_9"}},
     "spec.grader.evaluation_metric", "rouge_l"),
    ("python-does-not-compile", {**GRPO, "grader": {"type": "python", "source": "def grade(sample, item)\n  return 1"}},
     "spec.grader.source", "does not compile"),
    ("python-without-grade", {**GRPO, "grader": {"type": "python", "source": "def score(s, i):\n    return 1.0\n"}},
     "spec.grader.source", "grade(sample, item)"),
    ("multi-unsafe-formula", {**GRPO, "grader": {"type": "multi", "calculate_output": "__import__('os').system('x')",
                                                 "graders": {"a": GRPO["grader"]}}}, "spec.grader.calculate_output", "only these functions"),
    ("multi-unknown-name", {**GRPO, "grader": {"type": "multi", "calculate_output": "a + b",
                                               "graders": {"a": GRPO["grader"]}}}, "spec.grader.calculate_output", "unknown name 'b'"),
    ("label-model-passing-not-in-labels", {**GRPO, "grader": {"type": "label_model", "model": "judge", "labels": ["yes", "no"],
                                                              "passing_labels": ["maybe"],
                                                              "input": [{"role": "user", "content": "{{sample.output_text}}"}]}},
     "spec.grader.passing_labels", "not in labels"),
    ("score-model-bad-range", {**GRPO, "grader": {"type": "score_model", "model": "judge", "range": [1, 0],
                                                  "input": [{"role": "user", "content": "x"}]}}, "spec.grader.range", "min < max"),
    ("rlaif-with-rule-grader", {**GRPO, "algorithm": "rlaif"}, "spec.grader.type", "AI judge"),
    ("literal-hf-token", {"spec.secrets": {"huggingFaceToken": "hf_abcdef"}}, "spec.secrets", "literal secret"),
    ("literal-s3-key", {"spec.secrets": {"storageCredentials": {"accessKeyId": "AKIA", "secretAccessKey": {"name": "s", "key": "k"}}}},
     "spec.secrets.storageCredentials", "literal secret"),
    ("secret-ref-without-key", {"spec.secrets": {"huggingFaceToken": {"name": "hf"}}}, "spec.secrets.huggingFaceToken.key", "required"),
    ("nodes-zero", {"spec.resources": {"nodes": 0}}, "spec.resources.nodes", "greater than or equal to 1"),
    ("bad-memory-quantity", {"spec.resources": {"memory": "lots"}}, "spec.resources.memory", "quantity"),
    ("ranks-differ-from-gpus", {"spec.resources": {"gpusPerNode": 2, "processesPerNode": 4}},
     "spec.resources.processesPerNode", "one rank per GPU"),
    ("fsdp-own-loop", {**GRPO, "algorithm": "ppo", "spec.resources": {"strategy": "fsdp"}}, "spec.resources.strategy", "TRL-based"),
    # reft's ppo stage is our own loop too (the one algorithm table, align_api.algorithms)
    ("fsdp-reft-ppo", {**GRPO, "algorithm": "reft", "spec.hyperparameters": {"rlStage": "ppo"},
                       "spec.resources": {"strategy": "fsdp"}}, "spec.resources.strategy", "rlStage: ppo"),
    ("fsdp-on-cpu", {"spec.resources": {"strategy": "fsdp", "gpusPerNode": 0}}, "spec.resources.strategy", "needs GPUs"),
    ("bad-strategy", {"spec.resources": {"strategy": "zero3"}}, "spec.resources.strategy", "ddp"),
    ("collective-timeout-too-short", {"spec.resources": {"collectiveTimeoutSeconds": 1}},
     "spec.resources.collectiveTimeoutSeconds", "30"),
    ("checkpoint-every-zero", {"spec.checkpoints": {"everySteps": 0}}, "spec.checkpoints.everySteps", "greater than or equal to 1"),
    ("deadline-too-short", {"spec.runPolicy": {"activeDeadlineSeconds": 5}}, "spec.runPolicy.activeDeadlineSeconds", "60"),
    ("output-job-uri", {"spec.output": {"uri": "job://other"}}, "spec.output.uri", "job://"),
    ("gate-not-comparison", {"spec.evaluation": {"gates": ["winRate"]}, **GRPO}, "spec.evaluation.gates", "comparison"),
    ("gate-unknown-metric", {"spec.evaluation": {"gates": ["accuracyy > 0.5"]}, **GRPO}, "spec.evaluation.gates", "unknown name"),
    ("metrics-port-privileged", {"spec.metrics": {"port": 80}}, "spec.metrics.port", "1024"),
    ("offline-with-grader", {"spec.grader": GRPO["grader"]}, "spec.grader", "not used by algorithm 'dpo'"),
]


def _build(mutations: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for key, value in mutations.items():
        if key in ("algorithm", "grader"):
            doc["spec"][key] = copy.deepcopy(value)
        elif key == "metadata":
            doc["metadata"] = value
        else:
            _set(doc, key, value if value is _DELETE else copy.deepcopy(value))
    return doc


def test_base_manifest_is_valid() -> None:
    assert load_text(yaml.safe_dump(BASE))[0].spec.algorithm == "dpo"
    assert load_text(yaml.safe_dump(_build(GRPO)))[0].spec.grader.type == "string_check"


def test_corpus_is_large() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case,mutations,path,words", CASES, ids=[c[0] for c in CASES])
def test_invalid_manifest_names_the_field(case: str, mutations: dict[str, Any], path: str, words: str) -> None:
    text = yaml.safe_dump(_build(mutations), sort_keys=False)
    with pytest.raises(ManifestError) as info:
        load_text(text, file=f"{case}.yaml")
    message = str(info.value)
    assert f"{case}.yaml:" in message
    assert any(e.path.startswith(path) for e in info.value.errors), message
    assert words.lower() in message.lower(), message
    assert all(e.line for e in info.value.errors), "every error carries a line number"
