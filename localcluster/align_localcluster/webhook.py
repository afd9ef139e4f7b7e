"""The operator's admission webhook on a local control plane, registered as the chart registers it.

The chart (charts/align-operator/templates/webhook.yaml) installs a ValidatingWebhookConfiguration that sends
every AlignmentJob CREATE and UPDATE to the operator, which runs the same align_api validation as
`alignctl validate`. A local plane has no Service routing (no kube-proxy), so here the operator serves on
127.0.0.1 and the configuration names it by `clientConfig.url`; everything else (rules, policies, timeout) is the
chart's default, which tests/unit/test_chart_webhook.py checks against the rendered chart. The TLS material is
what the chart's `genCA`/`genSignedCert` make: a CA, and a serving certificate it signed for 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import time
from pathlib import Path
from typing import Any, Callable

from align_operator.handlers.admission import CERT_FILE, KEY_FILE, WEBHOOK_ID

#: The name of the webhook inside the configuration (the chart's).
HOOK_NAME = "validate-spec.align.dev"
#: The chart's defaults (values.yaml: webhook.failurePolicy, webhook.timeoutSeconds).
FAILURE_POLICY = "Ignore"
TIMEOUT_SECONDS = 10


def write_tls(directory: Path, days: int = 3650) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 signed by it (tls.crt, tls.key in `directory`, where the
    operator's ALIGN_OPERATOR_WEBHOOK_CERT_DIR points); returns the CA's PEM, the configuration's caBundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("align-webhook-ca")).issuer_name(name("align-webhook-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / KEY_FILE).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (directory / KEY_FILE).chmod(0o600)
    return ca.public_bytes(serialization.Encoding.PEM)


def url(port: int) -> str:
    """Where the operator serves the webhook on loopback (Kopf serves each handler at /<handler id>)."""
    return f"https://127.0.0.1:{port}/{WEBHOOK_ID}"


def configuration(name: str, port: int, ca_pem: bytes, *, failure_policy: str = FAILURE_POLICY) -> dict[str, Any]:
    """The chart's ValidatingWebhookConfiguration, with clientConfig.url instead of a Service."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "align-operator",
                                              "app.kubernetes.io/managed-by": "alignctl-local"}},
        "webhooks": [{
            "name": HOOK_NAME, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": failure_policy, "matchPolicy": "Equivalent", "timeoutSeconds": TIMEOUT_SECONDS,
            "clientConfig": {"url": url(port), "caBundle": base64.b64encode(ca_pem).decode()},
            "rules": [{"apiGroups": ["align.dev"], "apiVersions": ["v1alpha1"], "resources": ["alignmentjobs"],
                       "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}],
        }],
    }


def operator_env(port: int, cert_dir: Path) -> dict[str, str]:
    """The operator settings that make it serve the webhook (as the chart's Deployment sets them)."""
    return {"ALIGN_OPERATOR_WEBHOOK_PORT": str(port), "ALIGN_OPERATOR_WEBHOOK_ADDR": "127.0.0.1",
            "ALIGN_OPERATOR_WEBHOOK_CERT_DIR": str(cert_dir)}


#: Offset of the webhook's port from the real plane's port base (realk8s.sh uses 379-381, 443, 479-481, 543).
PORT_OFFSET = 643
#: Valid to the CRD's schema, invalid to align_api (numGenerations is not a DPO field): only the webhook refuses it.
PROBE = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "webhook-probe"},
         "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "d.jsonl"}},
                  "hyperparameters": {"numGenerations": 8}}}


def denies_probe(status: int, text: str) -> bool:
    """Whether an answer to creating PROBE (dry run) is this webhook's refusal."""
    return status == 422 and HOOK_NAME in text


class NotCalled(RuntimeError):
    """The API server refused the configuration, or did not call the webhook in time."""


def register(kubeconfig: Path, port: int, ca_pem: bytes, operator_running: Callable[[], bool],
             timeout: float = 60.0, name: str = "align-operator-local") -> str:
    """Register the operator's webhook as the chart does (replacing one an earlier plane left, with another CA),
    then wait until the API server calls it: it refuses PROBE in a dry run. Returns the webhook's URL."""
    from .kube import http_client

    body = configuration(name, port, ca_pem)
    with http_client(kubeconfig) as client:
        path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
        client.delete(f"{path}/{name}")
        response = client.post(path, json=body)
        if response.status_code != 201:
            raise NotCalled(f"the API server refused the webhook configuration: {response.status_code} "
                            f"{response.text[:500]}")
        deadline = time.monotonic() + timeout
        while True:
            probe = client.post("/apis/align.dev/v1alpha1/namespaces/default/alignmentjobs",
                                params={"dryRun": "All"}, json=PROBE)
            if denies_probe(probe.status_code, probe.text):
                return url(port)
            if not operator_running():
                raise NotCalled("the operator exited before serving the admission webhook")
            if time.monotonic() > deadline:
                raise NotCalled(f"the API server did not call the admission webhook within {timeout:.0f}s (last "
                                f"answer {probe.status_code})")
            time.sleep(0.3)
