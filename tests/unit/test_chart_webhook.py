"""The chart's admission webhook: TLS (Helm's self-signed CA, or cert-manager), the Service, the
ValidatingWebhookConfiguration, and the operator Deployment serving it, wired to one another.
On a real API server: tests/real/test_validation_parity.py (webhook) and tests/real/test_helm_real.py (install)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509

from align_operator.handlers.admission import CERT_FILE, KEY_FILE, WEBHOOK_ID
from tests.unit.chart_support import by_kind, documents, helm_sdk_available, one, render_many

pytestmark = pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")

VALUE_SETS = {
    "defaults": {},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}, "failurePolicy": "Fail", "port": 10443}},
    "off": {"webhook": {"enabled": False}},
}


@pytest.fixture(scope="module")
def docs() -> dict[str, list[dict[str, Any]]]:
    results = render_many([{"values": v, "namespace": "align-system", "name": "align"} for v in VALUE_SETS.values()])
    for name, result in zip(VALUE_SETS, results):
        assert "error" not in result, f"{name}: {result.get('error')}"
    return {name: documents(r["manifest"]) for name, r in zip(VALUE_SETS, results)}


def _pod(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "Deployment")["spec"]["template"]["spec"]


def _served_port(objs: list[dict[str, Any]]) -> tuple[int, str]:
    """The webhook's container port, and the env that makes the operator listen on it."""
    container = _pod(objs)["containers"][0]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "webhook")
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-tls")
    assert env["ALIGN_OPERATOR_WEBHOOK_CERT_DIR"] == mount["mountPath"]
    return port, env["ALIGN_OPERATOR_WEBHOOK_PORT"]


def _hook(objs: list[dict[str, Any]]) -> dict[str, Any]:
    config = one(objs, "ValidatingWebhookConfiguration")
    assert len(config["webhooks"]) == 1
    return config["webhooks"][0]


def _service_reaches_the_operator(objs: list[dict[str, Any]]) -> None:
    client = _hook(objs)["clientConfig"]["service"]
    service = next(s for s in by_kind(objs, "Service") if s["metadata"]["name"] == client["name"])
    assert client["namespace"] == service["metadata"]["namespace"] == "align-system"
    assert client["path"] == f"/{WEBHOOK_ID}"  # Kopf serves each handler at /<id>
    target = next(p for p in service["spec"]["ports"] if p["port"] == client["port"])["targetPort"]
    assert target == "webhook"
    port, env_port = _served_port(objs)
    assert env_port == str(port)


def test_default_tls_is_a_self_signed_ca_the_api_server_trusts(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["defaults"]
    _service_reaches_the_operator(objs)
    hook = _hook(objs)
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["rules"] == [{"apiGroups": ["align.dev"], "apiVersions": ["v1alpha1"], "resources": ["alignmentjobs"],
                              "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}]
    secret = one(objs, "Secret")
    assert secret["type"] == "kubernetes.io/tls" and {CERT_FILE, KEY_FILE} <= set(secret["data"])
    assert next(v for v in _pod(objs)["volumes"] if v["name"] == "webhook-tls")["secret"]["secretName"] == \
        secret["metadata"]["name"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"][CERT_FILE]))
    cert.verify_directly_issued_by(ca)  # the serving certificate chains to the caBundle the API server gets
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    service = hook["clientConfig"]["service"]
    assert f"{service['name']}.{service['namespace']}.svc" in names  # the name the API server dials


def test_cert_manager_issues_the_certificate_and_injects_the_ca(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["cert-manager"]
    _service_reaches_the_operator(objs)
    assert _served_port(objs)[0] == 10443
    assert not by_kind(objs, "Secret"), "cert-manager writes the Secret"
    certificate, issuer = one(objs, "Certificate"), one(objs, "Issuer")
    assert certificate["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer"}
    assert next(v for v in _pod(objs)["volumes"] if v["name"] == "webhook-tls")["secret"]["secretName"] == \
        certificate["spec"]["secretName"]
    config = one(objs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"align-system/{certificate['metadata']['name']}"
    assert "caBundle" not in _hook(objs)["clientConfig"] and _hook(objs)["failurePolicy"] == "Fail"
    service = _hook(objs)["clientConfig"]["service"]
    assert f"{service['name']}.align-system.svc" in certificate["spec"]["dnsNames"]


def test_webhook_off_renders_nothing_and_the_operator_serves_nothing(docs: dict[str, list[dict[str, Any]]]) -> None:
    objs = docs["off"]
    assert not by_kind(objs, "ValidatingWebhookConfiguration") and not by_kind(objs, "Secret")
    container = _pod(objs)["containers"][0]
    assert {e["name"]: e.get("value") for e in container["env"]}["ALIGN_OPERATOR_WEBHOOK_PORT"] == "0"
    assert all(p["name"] != "webhook" for p in container["ports"])
    assert all(v["name"] != "webhook-tls" for v in _pod(objs)["volumes"])


def test_the_local_plane_registers_the_webhook_the_chart_installs(docs: dict[str, list[dict[str, Any]]],
                                                                  tmp_path: Any) -> None:
    """`alignctl local up --real` registers align_localcluster.webhook's configuration: the chart's, field for field,
    but for how the API server reaches the operator (a loopback URL, no Service) and its CA."""
    from align_localcluster import webhook

    chart = _hook(docs["defaults"])
    ca_pem = webhook.write_tls(tmp_path)
    local = webhook.configuration("align-operator-local", 61643, ca_pem)["webhooks"]
    assert len(local) == 1
    assert {k: v for k, v in local[0].items() if k != "clientConfig"} == \
        {k: v for k, v in chart.items() if k != "clientConfig"}
    assert local[0]["clientConfig"]["url"] == f"https://127.0.0.1:61643{chart['clientConfig']['service']['path']}"
    ca = x509.load_pem_x509_certificate(base64.b64decode(local[0]["clientConfig"]["caBundle"]))
    cert = x509.load_pem_x509_certificate((tmp_path / CERT_FILE).read_bytes())
    cert.verify_directly_issued_by(ca)  # what the operator serves chains to what the API server is given
