"""Generate the AlignmentJob CustomResourceDefinition from the pydantic models.

`python -m align_api.crd --write` writes crds/ and the Helm chart's copy; `--check` fails on drift.
Pydantic's JSON schema is turned into a *structural* OpenAPI v3 schema: $refs inlined, Optional[X] -> X,
unions of objects flattened (graders), a description on every property, and CEL rules added.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from .algorithms import ITERATIVE_ALGORITHMS, ONLINE_ALGORITHMS
from .constants import CATEGORY, CRD_NAME, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION
from .spec import AlignmentJobSpec
from .status import Status

CRD_FILE = "align.dev_alignmentjobs.yaml"
REPO = Path(__file__).resolve().parents[2]
TARGETS = (REPO / "crds" / CRD_FILE, REPO / "charts" / "align-operator" / "crds" / CRD_FILE)

_DROP = {"title", "discriminator", "x-align-algorithms", "$defs", "examples"}
#: Nesting depth at which recursive grader definitions stop being described (multi inside multi).
_MAX_GRADER_DEPTH = 1

# CEL rules on spec. Transition rules (with oldSelf) only run on update.
SPEC_RULES: list[dict[str, str]] = [
    {"rule": "self.algorithm == oldSelf.algorithm", "message": "spec.algorithm is immutable; create a new AlignmentJob",
     "fieldPath": ".algorithm", "reason": "FieldValueForbidden"},
    {"rule": "self.model == oldSelf.model", "message": "spec.model is immutable; create a new AlignmentJob",
     "fieldPath": ".model", "reason": "FieldValueForbidden"},
    {"rule": "self.data == oldSelf.data", "message": "spec.data is immutable; create a new AlignmentJob",
     "fieldPath": ".data", "reason": "FieldValueForbidden"},
    {"rule": "!has(oldSelf.runPolicy) || !has(oldSelf.runPolicy.cancel) || !oldSelf.runPolicy.cancel "
             "|| (has(self.runPolicy) && has(self.runPolicy.cancel) && self.runPolicy.cancel)",
     "message": "spec.runPolicy.cancel cannot be unset: a cancelled job stays cancelled; create a new AlignmentJob",
     "fieldPath": ".runPolicy.cancel", "reason": "FieldValueForbidden"},
    {"rule": "!(self.algorithm in [" + ", ".join(f"'{a.value}'" for a in sorted(ONLINE_ALGORITHMS)) + "]) || has(self.grader)",
     "message": "grader is required for online algorithms (ppo, grpo, rloo, online-dpo, reft, rlaif, tpo)",
     "fieldPath": ".grader", "reason": "FieldValueRequired"},
    {"rule": "!(self.algorithm in [" + ", ".join(f"'{a.value}'" for a in sorted(ITERATIVE_ALGORITHMS)) + "]) "
             "|| !has(self.hyperparameters) || !has(self.hyperparameters.rounds) || has(self.grader)",
     "message": "grader is required for iterative dpo/rpo (hyperparameters.rounds)",
     "fieldPath": ".hyperparameters.rounds", "reason": "FieldValueRequired"},
    {"rule": "!has(self.model.reference) || !has(self.model.reference.kind) || self.model.reference.kind != 'adapter' "
             "|| has(self.model.reference.adapter)",
     "message": "model.reference.kind 'adapter' needs model.reference.adapter",
     "fieldPath": ".model.reference.adapter", "reason": "FieldValueRequired"},
    {"rule": "!has(self.model.quantization) || !has(self.resources) || !has(self.resources.gpusPerNode) "
             "|| self.resources.gpusPerNode > 0",
     "message": "model.quantization needs resources.gpusPerNode >= 1", "fieldPath": ".model.quantization",
     "reason": "FieldValueInvalid"},
    {"rule": "!has(self.resources) || !has(self.resources.strategy) || self.resources.strategy != 'fsdp' "
             "|| !has(self.resources.gpusPerNode) || self.resources.gpusPerNode > 0",
     "message": "resources.strategy fsdp needs GPUs (gpusPerNode >= 1); CPU ranks use ddp",
     "fieldPath": ".resources.strategy", "reason": "FieldValueInvalid"},
    {"rule": "!has(self.resources) || !has(self.resources.processesPerNode) || !has(self.resources.gpusPerNode) "
             "|| self.resources.gpusPerNode == 0 || self.resources.processesPerNode == self.resources.gpusPerNode",
     "message": "resources.processesPerNode must equal gpusPerNode on GPUs (one rank per GPU); leave it unset",
     "fieldPath": ".resources.processesPerNode", "reason": "FieldValueInvalid"},
]


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].split("/")[-1]])
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        target.update(extra)
        return target
    return schema


def _merge_objects(variants: list[dict[str, Any]], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    """Flatten a union of objects (e.g. the grader types) into one structural object."""
    props: dict[str, Any] = {}
    types: list[str] = []
    for variant in variants:
        variant = _resolve(variant, defs)
        for name, prop in variant.get("properties", {}).items():
            if name == "type":
                types.extend(_resolve(prop, defs).get("enum", []) or [_resolve(prop, defs).get("const")])
                continue
            converted = _convert(prop, defs, depth)
            if name in props and props[name].get("type") != converted.get("type"):
                # Same name, different shapes across variants (e.g. grader `input`: string or messages).
                props[name] = {"description": props[name].get("description", "") + " / " + converted.get("description", ""),
                               "x-kubernetes-preserve-unknown-fields": True}
            else:
                props.setdefault(name, converted)
    props["type"] = {"type": "string", "enum": sorted({t for t in types if t}), "description": "Grader type."}
    merged = {"type": "object", "properties": dict(sorted(props.items())), "required": ["type"]}
    # A default of one variant (e.g. score_model's range) would be invalid on another: the API server
    # must not fill any in; the trainer applies them after picking the variant.
    _strip_defaults(merged)
    return merged


def _convert(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    schema = _resolve(schema, defs)
    description = schema.get("description")
    default = schema.get("default")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(o, defs) for o in schema[key] if o.get("type") != "null"]
            nullable = len(options) < len(schema[key])
            if len(options) == 1:
                out = _convert(options[0], defs, depth)
            elif all(o.get("type") == "object" or "properties" in o for o in options):
                if depth >= _MAX_GRADER_DEPTH + 1:
                    out = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                else:
                    out = _merge_objects(options, defs, depth + 1)
            elif all(o.get("type") in ("number", "integer") for o in options):
                out = {"type": "number"}
            else:
                out = {"x-kubernetes-preserve-unknown-fields": True}
            if description:
                out["description"] = description
            if default is not None and "properties" not in out:
                out["default"] = default
            if nullable:
                out["nullable"] = True
            return out
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP or key in ("properties", "items", "additionalProperties", "prefixItems", "const", "$ref"):
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        out[key] = value
    if "const" in schema:
        out["enum"] = [schema["const"]]
        out.setdefault("type", "string")
    if "enum" in out and "type" not in out:
        out["type"] = "string" if all(isinstance(v, str) for v in out["enum"]) else "integer"
    if schema.get("type") == "object" or "properties" in schema:
        out["type"] = "object"
        props = schema.get("properties", {})
        if props:
            out["properties"] = {name: _convert(prop, defs, depth) for name, prop in props.items()}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = _convert(extra, defs, depth)
        elif not props:
            out["x-kubernetes-preserve-unknown-fields"] = True
        if isinstance(default, dict):
            out.pop("default", None)
    if schema.get("type") == "array":
        if "prefixItems" in schema:
            out["items"] = _convert(schema["prefixItems"][0], defs, depth)
            out["minItems"] = out["maxItems"] = len(schema["prefixItems"])
        else:
            out["items"] = _convert(schema.get("items", {}), defs, depth)
        if isinstance(default, list) and default == []:
            out.pop("default", None)
    return out


def _strip_defaults(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    for prop in schema.get("properties", {}).values():
        _strip_defaults(prop)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _strip_defaults(schema[key])


def _describe_all(schema: dict[str, Any], path: str) -> None:
    for name, prop in schema.get("properties", {}).items():
        if not prop.get("description"):
            prop["description"] = f"{name} ({path}.{name})."
        _describe_all(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            _describe_all(schema[key], path + "[]")


def spec_schema() -> dict[str, Any]:
    raw = AlignmentJobSpec.model_json_schema(by_alias=True, mode="validation")
    schema = _convert(raw, raw.get("$defs", {}))
    # Hyperparameter defaults depend on the algorithm and unset ones must stay unset (setting one the
    # algorithm does not use is an error), so the API server must not fill them in.
    _strip_defaults(schema["properties"]["hyperparameters"])
    schema["x-kubernetes-validations"] = SPEC_RULES
    return schema


def status_schema() -> dict[str, Any]:
    raw = Status.model_json_schema(by_alias=True, mode="validation")
    schema = _convert(raw, raw.get("$defs", {}))
    _strip_defaults(schema)
    schema["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    schema["properties"]["conditions"]["items"]["required"] = ["type", "status", "reason", "lastTransitionTime"]
    return schema


def build_crd() -> dict[str, Any]:
    spec = spec_schema()
    status = status_schema()
    root = {
        "type": "object",
        "description": "An AlignmentJob aligns a model (SFT, reward modelling, DPO, KTO, CPO, SimPO, ORPO, PPO, GRPO, "
                       "RLOO, online DPO, ReFT, RLAIF, TPO) on the cluster's GPUs.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this object."},
            "kind": {"type": "string", "description": "Kind is the REST resource this object represents."},
            # Exactly {type: object}: every real API server rejects anything more on the root metadata
            # ("must not specify anything other than name and generateName").
            "metadata": {"type": "object"},
            "spec": {**spec, "description": "Desired state: what to align, with what data and how."},
            "status": {**status, "description": "Observed state, written by the operator."},
        },
    }
    _describe_all(root, "")
    root["properties"]["metadata"] = {"type": "object"}  # _describe_all gave it a description: take it back
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "annotations": {"align.dev/generated-by": "python -m align_api.crd --write"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": [SHORT_NAME], "categories": [CATEGORY]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Algorithm", "type": "string", "jsonPath": ".spec.algorithm"},
                    {"name": "Model", "type": "string", "jsonPath": ".spec.model.base"},
                    {"name": "Progress", "type": "string", "jsonPath": ".status.progress.percent"},
                    {"name": "GPU-h", "type": "number", "jsonPath": ".status.usage.gpuHours"},
                    {"name": "Pod-h", "type": "number", "jsonPath": ".status.usage.podHours", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def render() -> str:
    header = "# Generated by `python -m align_api.crd --write` from api/align_api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write crds/ and the chart's copy")
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed copy differs")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        for target in TARGETS:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"wrote {target.relative_to(REPO)}")
        return 0
    if args.check:
        stale = [str(t.relative_to(REPO)) for t in TARGETS if not t.exists() or t.read_text() != text]
        for path in stale:
            print(f"{path} differs from the generated CRD; run: python -m align_api.crd --write", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
