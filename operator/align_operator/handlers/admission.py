"""The validating admission webhook: `kubectl apply` of an invalid AlignmentJob fails at apply time.

The same align_api validation as `alignctl validate` and the operator (handlers.reconcile.parse), with the same
messages naming the field, so what the API server refuses and what alignctl refuses cannot drift apart.
The API server prunes unknown fields and checks types and CEL rules before calling us; this adds everything
the CRD schema cannot say (a python grader that does not compile, a hyperparameter another algorithm uses, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kopf

from align_api import ManifestError

from ..settings import Settings
from ..status.promotion import refusal
from .reconcile import invalid_message, parse

#: Kopf's handler id, also the URL path Kopf serves it at (the chart's ValidatingWebhookConfiguration uses it).
WEBHOOK_ID = "validate-spec"
#: Where the chart mounts the webhook's TLS Secret (kubernetes.io/tls keys).
CERT_FILE, KEY_FILE = "tls.crt", "tls.key"


def validate(body: kopf.Body, operation: str | None, old: kopf.Body | None, new: kopf.Body | None,
             **_: Any) -> None:
    """Admit a CREATE or a spec-changing UPDATE only if the object validates; 422 with the field's path if not."""
    if operation == "UPDATE" and old is not None and new is not None and old.get("spec") == new.get("spec"):
        return  # metadata-only updates (finalizers, Kopf's annotations, labels) never change validity
    try:
        parse(body)
    except ManifestError as exc:
        raise kopf.AdmissionError(invalid_message(exc), code=422) from None
    if operation == "UPDATE" and old is not None and new is not None and \
            (old.get("spec") or {}).get("promote") != (new.get("spec") or {}).get("promote"):
        refused = refusal(new.get("spec") or {}, old.get("status") or {})  # the API server's request holds status
        if refused:
            raise kopf.AdmissionError(refused, code=422)


def server(settings: Settings) -> kopf.WebhookServer:
    """Kopf's HTTPS webhook server with the certificate the chart provides (its own, or cert-manager's)."""
    cert_dir = Path(settings.webhook_cert_dir)
    missing = [name for name in (CERT_FILE, KEY_FILE) if not (cert_dir / name).is_file()]
    if missing:
        raise RuntimeError(f"admission webhook enabled (port {settings.webhook_port}) but {', '.join(missing)} "
                           f"missing in {cert_dir} (ALIGN_OPERATOR_WEBHOOK_CERT_DIR)")
    # Kopf reloads the files when they change (cert-manager renewals) without restarting the operator.
    return kopf.WebhookServer(addr=settings.webhook_addr, port=settings.webhook_port,
                              certfile=str(cert_dir / CERT_FILE), pkeyfile=str(cert_dir / KEY_FILE))
