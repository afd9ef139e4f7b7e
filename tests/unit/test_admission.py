"""The admission webhook handler: the same validation and messages as alignctl; metadata-only updates pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kopf
import pytest

from align_api import ManifestError, validate_document
from align_operator.handlers import admission
from align_operator.settings import Settings

VALID: dict[str, Any] = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                         "metadata": {"name": "j", "namespace": "ml", "uid": "u", "generation": 1},
                         "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"},
                                  "data": {"train": {"uri": "d.jsonl"}}}}
INVALID = {**VALID, "spec": {**VALID["spec"], "hyperparameters": {"numGenerations": 8}}}


def _call(body: dict[str, Any], operation: str, old: dict[str, Any] | None = None) -> None:
    admission.validate(body=kopf.Body(body), operation=operation, old=kopf.Body(old) if old else None,
                       new=kopf.Body(body))


def test_an_invalid_object_is_denied_with_the_field_path_and_code_422() -> None:
    with pytest.raises(kopf.AdmissionError) as info:
        _call(INVALID, "CREATE")
    assert info.value.code == 422
    assert str(info.value).startswith("spec.hyperparameters.numGenerations: is not used by algorithm 'dpo'")
    with pytest.raises(ManifestError) as cli:  # what alignctl validate says about the same document
        validate_document(INVALID)
    assert str(info.value) == f"{cli.value.errors[0].path}: {cli.value.errors[0].message}"


def test_the_wire_is_strict_in_the_webhook_too() -> None:
    body = {**VALID, "spec": {**VALID["spec"], "hyperparameters": {"batchSize": "8"}}}
    with pytest.raises(kopf.AdmissionError, match=r"spec\.hyperparameters\.batchSize: .*string '8'"):
        _call(body, "CREATE")


def test_a_spec_changing_update_is_checked() -> None:
    with pytest.raises(kopf.AdmissionError):
        _call(INVALID, "UPDATE", old=VALID)


def test_a_metadata_only_update_is_admitted_even_for_an_invalid_object() -> None:
    # An object stored while the webhook was down (failurePolicy Ignore) must stay deletable: removing a
    # finalizer is an UPDATE that leaves spec unchanged.
    old = {**INVALID, "metadata": {**INVALID["metadata"], "finalizers": ["align.dev/finalizer"]}}
    _call(INVALID, "UPDATE", old=old)
    _call(VALID, "CREATE")


def test_the_server_needs_the_certificate_files(tmp_path: Path) -> None:
    settings = Settings(webhook_port=9443, webhook_cert_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="tls.crt, tls.key missing"):
        admission.server(settings)
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    server = admission.server(settings)
    assert (server.port, server.certfile) == (9443, str(tmp_path / "tls.crt"))


def test_promoting_a_step_an_ended_job_does_not_keep_is_denied_naming_the_kept_steps() -> None:
    spec = {**VALID["spec"], "checkpoints": {"volume": "ckpt"}}
    old = {**VALID, "spec": spec, "status": {"phase": "Cancelled", "checkpoints": [{"step": 40}, {"step": 50}]}}
    with pytest.raises(kopf.AdmissionError) as info:
        _call({**old, "spec": {**spec, "promote": {"step": 45}}}, "UPDATE", old=old)
    assert info.value.code == 422 and str(info.value) == "spec.promote.step: no checkpoint at step 45; kept: 40, 50"
    _call({**old, "spec": {**spec, "promote": {"step": 40}}}, "UPDATE", old=old)        # a kept step passes
    running = {**old, "status": {"phase": "Running", "checkpoints": [{"step": 40}]}}
    _call({**running, "spec": {**spec, "promote": {"step": 80}}}, "UPDATE", old=running)  # it may still come
