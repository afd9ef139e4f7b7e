"""The wire is strict: manifests mean to alignctl what they mean to kubectl and the API server.

YAML is read as kubectl reads it (go-yaml v2 through sigs.k8s.io/yaml), and the document validates as the JSON
kubectl sends: no string-to-number coercion, camelCase names only, nothing unknown. The real-server side of
this is tests/real/test_validation_parity.py.
"""

from __future__ import annotations

import pytest

from align_api import ManifestError, load_text, yamlio
from align_operator.handlers.reconcile import parse

HEAD = """apiVersion: align.dev/v1alpha1
kind: AlignmentJob
metadata: {name: job}
spec:
  algorithm: dpo
  model: {base: builtin://tiny}
  data: {train: {uri: data/pairs.jsonl}}
"""


def _errors(text: str) -> list[tuple[str, str, int | None]]:
    with pytest.raises(ManifestError) as info:
        load_text(text, "job.yaml")
    return [(e.path, e.message, e.line) for e in info.value.errors]


@pytest.mark.parametrize("text, value", [
    ("1e-5", 1e-5), ("1E-5", 1e-5), ("5e-6", 5e-6), ("1.0e-5", 1e-5), (".5", 0.5), ("-1e3", -1000.0),
    ("3.", 3.0), ("8", 8), ("0x10", 16), ("010", 8), ("1_000", 1000),
    ("y", True), ("n", False), ("yes", True), ("off", False), ("True", True),
    ("2024-01-01", "2024-01-01"), ("1:30", "1:30"), ("'1e-5'", "1e-5"), ("~", None),
])
def test_scalars_resolve_as_go_yaml_v2_does(text: str, value: object) -> None:
    got = yamlio.load(f"v: {text}")["v"]
    assert got == value and type(got) is type(value)


def test_exponent_without_a_dot_is_a_valid_learning_rate() -> None:
    job = load_text(HEAD + "  hyperparameters: {learningRate: 1e-5, beta: 1e-1}\n")[0]
    assert job.spec.hyperparameters.learning_rate == 1e-5 and job.spec.hyperparameters.beta == 0.1


def test_a_whole_float_is_an_integer_on_the_wire() -> None:
    # kubectl encodes the YAML float 2.0 as the JSON number 2 (Go's encoding/json): an integer to the server.
    job = load_text(HEAD + "  hyperparameters: {epochs: 2.0, learningRate: 1.0}\n")[0]
    assert job.spec.hyperparameters.epochs == 2
    errors = _errors(HEAD + "  hyperparameters: {epochs: 1.5}\n")
    assert errors[0][0] == "spec.hyperparameters.epochs"


@pytest.mark.parametrize("line, path", [
    ('batchSize: "8"', "spec.hyperparameters.batchSize"),
    ("learningRate: '1e-5'", "spec.hyperparameters.learningRate"),
    ('epochs: "1"', "spec.hyperparameters.epochs"),
])
def test_a_quoted_number_is_a_string_and_an_error(line: str, path: str) -> None:
    errors = _errors(HEAD + f"  hyperparameters:\n    {line}\n")
    assert [(p, line) for p, _, line in errors] == [(path, 9)]
    assert "got the string" in errors[0][1]


def test_a_quoted_boolean_is_an_error() -> None:
    errors = _errors(HEAD.replace("model: {base: builtin://tiny}", "model: {base: builtin://tiny, trustRemoteCode: 'true'}"))
    assert errors[0][0] == "spec.model.trustRemoteCode" and "got the string 'true'" in errors[0][1]


@pytest.mark.parametrize("key, path, suggestion", [
    ("learning_rate: 1.0e-5", "spec.hyperparameters.learning_rate", "learningRate"),
    ("batch_size: 8", "spec.hyperparameters.batch_size", "batchSize"),
    ("learningRat: 1.0e-5", "spec.hyperparameters.learningRat", "learningRate"),
    ("zzz: 1", "spec.hyperparameters.zzz", None),
])
def test_snake_case_and_misspelt_keys_are_unknown_fields_with_a_suggestion(key: str, path: str,
                                                                           suggestion: str | None) -> None:
    errors = _errors(HEAD + f"  hyperparameters:\n    {key}\n")
    assert errors[0][0] == path and errors[0][1].startswith("unknown field")
    if suggestion:
        assert f"did you mean {suggestion}?" in errors[0][1]
    else:
        assert "did you mean" not in errors[0][1]


def test_snake_case_deep_in_the_spec_gets_its_camel_case_name() -> None:
    errors = _errors(HEAD.replace("model: {base: builtin://tiny}", "model: {base: builtin://tiny, trust_remote_code: true}"))
    assert errors[0][0] == "spec.model.trust_remote_code" and "did you mean trustRemoteCode?" in errors[0][1]


def test_not_a_number_has_no_json_form() -> None:
    errors = _errors(HEAD + "  hyperparameters: {beta: .nan}\n")
    assert errors[0][0] == "<document>" and "JSON" in errors[0][1]


def test_the_operator_parses_the_stored_object_strictly() -> None:
    # The operator and its admission webhook read the object as JSON from the API server: the same strict rules.
    body = yamlio.load(HEAD)
    body["metadata"].update(uid="u", resourceVersion="1", generation=1)
    body["spec"]["hyperparameters"] = {"batchSize": "8"}
    with pytest.raises(ManifestError) as info:
        parse(body)
    assert info.value.errors[0].path == "spec.hyperparameters.batchSize"
    body["spec"]["hyperparameters"] = {"batchSize": 8}
    assert parse(body).spec.hyperparameters.batch_size == 8
