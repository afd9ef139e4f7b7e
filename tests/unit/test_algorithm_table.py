"""The one algorithm table (align_api.algorithms.TABLE) and everything that reads it agree: validation, the CRD,
the generated docs, the hyperparameters' "Used by" lists and the trainer's registry and modules."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from align_api import ManifestError, validate_document
from align_api.algorithms import MODULES as TABLE_MODULES
from align_api.algorithms import ONLINE_ALGORITHMS, TABLE, loop_of, variant_of
from align_api.constants import Algorithm
from align_api.crd import build_crd
from align_api.hyperparameters import Hyperparameters, accepted, algorithms_for, variants

GRADER = {"type": "string_check", "name": "g", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
          "operation": "eq"}
JUDGE = {"type": "score_model", "name": "j", "model": "builtin://tiny", "range": [0, 10],
         "input": [{"role": "user", "content": "Rate {{sample.output_text}} from 0 to 10."}]}


def job(algorithm: str, hp: dict[str, Any] | None = None, **resources: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"algorithm": algorithm, "model": {"base": "builtin://tiny"},
                            "data": {"train": {"uri": "data/rows.jsonl"}}, "hyperparameters": hp or {},
                            "resources": {"gpusPerNode": 8, **resources}}
    if TABLE[Algorithm(algorithm)].online or (hp or {}).get("rounds"):
        spec["grader"] = JUDGE if algorithm == "rlaif" else GRADER
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"}, "spec": spec}


def camel(name: str) -> str:
    return Hyperparameters.model_fields[name].alias or name


def every_variant() -> list[tuple[Algorithm, dict[str, Any]]]:
    return [(a, v) for a in Algorithm for v in variants(a)]


def test_every_algorithm_is_in_the_table_and_the_trainer_registry() -> None:
    from align_trainer.algorithms import ALGORITHMS
    assert set(TABLE) == set(Algorithm) and ALGORITHMS == TABLE_MODULES


@pytest.mark.parametrize("algorithm,variant", every_variant(), ids=lambda x: str(x))
def test_fsdp_is_accepted_exactly_where_a_trl_trainer_runs(algorithm: Algorithm, variant: dict[str, Any]) -> None:
    hp = {camel(k): v for k, v in variant.items() if v is not None}
    settings = Hyperparameters.model_construct(**variant)
    if loop_of(algorithm, settings) == "trl":
        validate_document(job(algorithm.value, hp, strategy="fsdp"))
    else:
        with pytest.raises(ManifestError, match="resources.strategy"):
            validate_document(job(algorithm.value, hp, strategy="fsdp"))


def test_reft_with_its_ppo_stage_is_refused_fsdp_like_ppo() -> None:  # the disagreement issue 23 found
    for doc in (job("reft", {"rlStage": "ppo"}, strategy="fsdp"), job("ppo", strategy="fsdp")):
        with pytest.raises(ManifestError, match="own loop"):
            validate_document(doc)
    validate_document(job("reft", {"rlStage": "grpo"}, strategy="fsdp"))


def test_every_trainer_module_of_the_table_defines_run() -> None:
    for module in TABLE_MODULES.values():
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        assert re.search(r"^def run\(ctx: TrainContext", Path(spec.origin).read_text(), re.M), module


def test_used_by_lists_and_accepted_agree() -> None:
    for name in Hyperparameters.model_fields:
        users = {a for a, v in every_variant() if name in accepted(a, v)}
        assert users == set(algorithms_for(name)), name
        description = Hyperparameters.model_fields[name].description or ""
        if set(algorithms_for(name)) != set(Algorithm):
            listed = description.rsplit("Used by: ", 1)[1].rstrip(".").split(", ")
            assert set(listed) == {a.value for a in users}, name


@pytest.mark.parametrize("algorithm,variant", every_variant(), ids=lambda x: str(x))
def test_accepted_is_what_validation_accepts(algorithm: Algorithm, variant: dict[str, Any]) -> None:
    """Every (algorithm, variant, hyperparameter) pair: set alone at its default, the field is accepted exactly
    when accepted() says so."""
    base = {camel(k): v for k, v in variant.items() if v is not None}
    for name, field in Hyperparameters.model_fields.items():
        if name in variant or field.default is None:
            continue
        doc = job(algorithm.value, {**base, camel(name): field.default})
        if name in accepted(algorithm, variant):
            try:
                validate_document(doc)
            except ManifestError as exc:
                assert "hyperparameters." + camel(name) not in str(exc), (algorithm, variant, name, str(exc))
        else:
            with pytest.raises(ManifestError, match=f"hyperparameters.{camel(name)}"):
                validate_document(doc)


def test_the_crd_requires_a_grader_for_the_online_algorithms_of_the_table() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rule = next(r["rule"] for r in schema["x-kubernetes-validations"] if "has(self.grader)" in r["rule"]
                and "rounds" not in r["rule"])
    assert set(re.findall(r"'([a-z-]+)'", rule)) == {a.value for a in ONLINE_ALGORITHMS}


def test_the_generated_docs_carry_the_table() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
    for algorithm, info in TABLE.items():
        for variant in variants(algorithm):
            settings = Hyperparameters.model_construct(**variant)
            row = next(line for line in text.splitlines() if line.startswith(f"| `{algorithm.value}` |")
                       and all(f"{camel(k)}: {'unset' if v is None else v}" in line for k, v in variant.items()))
            assert f"| {info.family} | {loop_of(algorithm, settings)} |" in row, row
            assert variant_of(algorithm, settings) is None or variant == {variant_of(algorithm, settings).setting:
                                                                          variant_of(algorithm, settings).value}
