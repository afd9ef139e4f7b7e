"""The generated CRD: committed copies match the code, the schema is structural and described, CEL rules work."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterator

import celpy
import kubernetes_validate
import pytest
import yaml
from celpy import json_to_cel

from align_api import AlignmentJob, crd, docs

REPO = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO / "crds" / crd.CRD_FILE).read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC_SCHEMA = SCHEMA["properties"]["spec"]


def _props(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, prop in schema.get("properties", {}).items():
        yield f"{path}.{name}", prop
        yield from _props(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _props(schema[key], f"{path}[]")


def test_committed_crds_match_generator() -> None:
    assert crd.main(["--check"]) == 0, "run: python -m align_api.crd --write"
    chart_copy = REPO / "charts" / "align-operator" / "crds" / crd.CRD_FILE
    assert chart_copy.read_text() == (REPO / "crds" / crd.CRD_FILE).read_text()


def test_docs_spec_matches_generator() -> None:
    assert docs.main(["--check"]) == 0, "run: python -m align_api.docs --write"


def test_crd_object_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(CRD, "1.33", strict=True)


def test_every_property_has_a_description() -> None:
    # The root metadata is the one exception: real servers allow nothing but {type: object} there.
    missing = [path for path, prop in _props(SCHEMA) if not prop.get("description") and path != ".metadata"]
    assert not missing, missing


def test_schema_is_structural() -> None:
    """Structural schema rules: every node has a type (or preserves unknown fields); no anyOf/oneOf/$ref."""
    for path, prop in _props(SCHEMA):
        assert "type" in prop or prop.get("x-kubernetes-preserve-unknown-fields"), path
        for banned in ("anyOf", "oneOf", "allOf", "$ref", "const", "title", "discriminator"):
            assert banned not in prop, f"{path} has {banned}"


def test_names_columns_and_subresource() -> None:
    names = CRD["spec"]["names"]
    assert names["shortNames"] == ["aj"] and names["categories"] == ["align"]
    version = CRD["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Algorithm", "Model", "Progress",
                                                                        "GPU-h", "Pod-h", "Age"]


def test_enums_minimums_and_defaults_present() -> None:
    algo = SPEC_SCHEMA["properties"]["algorithm"]
    assert "tpo" in algo["enum"] and "online-dpo" in algo["enum"]
    lr = SPEC_SCHEMA["properties"]["hyperparameters"]["properties"]["learningRate"]
    assert lr["minimum"] == 0 and lr["exclusiveMinimum"] is True
    assert "default" not in lr, "hyperparameters must not be defaulted by the API server"
    assert SPEC_SCHEMA["properties"]["model"]["properties"]["adapter"]["properties"]["r"]["default"] == 16


def _apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Kubernetes' structural defaulting: fill defaults of absent properties of present objects."""
    if isinstance(obj, dict) and "properties" in schema:
        for name, prop in schema["properties"].items():
            if name not in obj and "default" in prop:
                obj[name] = copy.deepcopy(prop["default"])
            if name in obj:
                obj[name] = _apply_defaults(prop, obj[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in obj:
                if key not in schema["properties"]:
                    obj[key] = _apply_defaults(schema["additionalProperties"], obj[key])
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [_apply_defaults(schema["items"], item) for item in obj]
    return obj


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_api_server_defaults_keep_examples_valid(example: Path) -> None:
    """What the API server stores after defaulting must still pass our validation (the operator re-reads it)."""
    for doc in yaml.safe_load_all(example.read_text()):
        if not doc or doc.get("kind") != "AlignmentJob":
            continue
        defaulted = _apply_defaults(SCHEMA, copy.deepcopy(doc))
        AlignmentJob.model_validate(defaulted)


def _cel(rule: str, new: dict[str, Any], old: dict[str, Any] | None = None) -> bool:
    env = celpy.Environment()
    activation = {"self": json_to_cel(new)}
    if old is not None:
        activation["oldSelf"] = json_to_cel(old)
    return bool(env.program(env.compile(rule)).evaluate(activation))


RULES = {r["fieldPath"]: r["rule"] for r in SPEC_SCHEMA["x-kubernetes-validations"]}
SPEC = {"algorithm": "dpo", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "a.jsonl"}},
        "runPolicy": {"suspend": False}}


def test_cel_algorithm_model_data_are_immutable() -> None:
    changed_algo = {**SPEC, "algorithm": "kto"}
    changed_model = {**SPEC, "model": {"base": "Qwen/Qwen2.5-0.5B"}}
    changed_data = {**SPEC, "data": {"train": {"uri": "b.jsonl"}}}
    assert not _cel(RULES[".algorithm"], changed_algo, SPEC)
    assert not _cel(RULES[".model"], changed_model, SPEC)
    assert not _cel(RULES[".data"], changed_data, SPEC)
    suspended = {**SPEC, "runPolicy": {"suspend": True}}
    assert all(_cel(RULES[f], suspended, SPEC) for f in (".algorithm", ".model", ".data")), "suspend may change"


def test_cel_online_algorithms_need_a_grader() -> None:
    assert not _cel(RULES[".grader"], {**SPEC, "algorithm": "grpo"})
    assert _cel(RULES[".grader"], {**SPEC, "algorithm": "grpo", "grader": {"type": "python"}})
    assert _cel(RULES[".grader"], SPEC)


def test_cel_reference_adapter_needs_uri() -> None:
    rule = RULES[".model.reference.adapter"]
    assert not _cel(rule, {**SPEC, "model": {"base": "x", "reference": {"kind": "adapter"}}})
    assert _cel(rule, {**SPEC, "model": {"base": "x", "reference": {"kind": "adapter", "adapter": "job://sft"}}})
    assert _cel(rule, SPEC)


def test_cel_quantization_needs_gpus() -> None:
    rule = RULES[".model.quantization"]
    assert not _cel(rule, {**SPEC, "model": {"base": "x", "quantization": {"bits": 4}}, "resources": {"gpusPerNode": 0}})
    assert _cel(rule, {**SPEC, "model": {"base": "x", "quantization": {"bits": 4}}, "resources": {"gpusPerNode": 1}})


def test_cel_fsdp_needs_gpus_and_cpu_ranks_only_without_gpus() -> None:
    fsdp, ranks = RULES[".resources.strategy"], RULES[".resources.processesPerNode"]
    assert not _cel(fsdp, {**SPEC, "resources": {"strategy": "fsdp", "gpusPerNode": 0}})
    assert _cel(fsdp, {**SPEC, "resources": {"strategy": "fsdp", "gpusPerNode": 8}})
    assert _cel(fsdp, {**SPEC, "resources": {"strategy": "ddp", "gpusPerNode": 0}}) and _cel(fsdp, SPEC)
    assert not _cel(ranks, {**SPEC, "resources": {"processesPerNode": 4, "gpusPerNode": 2}})
    assert _cel(ranks, {**SPEC, "resources": {"processesPerNode": 4, "gpusPerNode": 0}})
    assert _cel(ranks, {**SPEC, "resources": {"processesPerNode": 2, "gpusPerNode": 2}}) and _cel(ranks, SPEC)


def test_root_metadata_is_only_an_object() -> None:
    # Real API servers reject anything more: "metadata: Forbidden: must not specify anything other than
    # name and generateName, but metadata is implicitly specified" (the emulator accepted a description).
    for path in [REPO / "crds" / crd.CRD_FILE, REPO / "charts" / "align-operator" / "crds" / crd.CRD_FILE,
                 REPO / "deploy" / "kustomize" / "base" / "crd.yaml"]:
        doc = yaml.safe_load(path.read_text())
        assert doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"] == {"type": "object"}, path
    assert crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"] == {"type": "object"}
