"""The chart's trainer NetworkPolicy allows only the egress a job needs, and the trainer-pod hub settings reach
the operator (rendered by Helm's own engine through helm-sdkpy)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.chart_support import by_kind, documents, helm_sdk_available, one, render_many

pytestmark = pytest.mark.skipif(not helm_sdk_available(), reason="helm-sdkpy is not installed: run scripts/setup.sh")

JUDGE = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "serving"}}}]
S3 = [{"ipBlock": {"cidr": "203.0.113.7/32"}}]
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {"networkPolicy": {"trainer": {"enabled": True}}},
    "judge-s3-hub": {"networkPolicy": {"trainer": {"enabled": True, "egress": {
        "judge": {"to": JUDGE}, "s3": {"to": S3, "ports": [{"protocol": "TCP", "port": 9000}]},
        "hub": {"enabled": True}, "extra": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}]}}},
        "trainer": {"huggingFace": {"disableTelemetry": False, "offline": "always"}}},
    "open": {"networkPolicy": {"trainer": {"enabled": True, "egress": {"restrict": False}}}},
    "bad-offline": {"trainer": {"huggingFace": {"offline": "sometimes"}}},
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    names = list(VALUE_SETS)
    return dict(zip(names, render_many([{"values": v, "namespace": "align-system", "name": "align"}
                                        for v in VALUE_SETS.values()])))


def trainer_policy(rendered: dict[str, Any], name: str) -> dict[str, Any]:
    assert "error" not in rendered[name], rendered[name].get("error")
    docs = documents(rendered[name]["manifest"])
    return next(p for p in by_kind(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-trainer"))["spec"]


def operator_env(rendered: dict[str, Any], name: str) -> dict[str, str]:
    container = one(documents(rendered[name]["manifest"]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_by_default_trainers_reach_only_dns_and_each_other(rendered: dict[str, Any]) -> None:
    spec = trainer_policy(rendered, "defaults")
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    egress = spec["egress"]
    assert len(egress) == 2 and all(rule.get("to") for rule in egress)  # no rule that allows everything
    assert egress[0]["to"] == [{"podSelector": spec["podSelector"]}]
    assert {p["port"] for p in egress[1]["ports"]} == {53}
    assert egress[1]["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}


def test_judge_s3_and_hub_are_allowed_only_when_configured(rendered: dict[str, Any]) -> None:
    egress = trainer_policy(rendered, "judge-s3-hub")["egress"]
    assert all(rule.get("to") for rule in egress)
    by_peer = {str(rule["to"]): rule.get("ports") for rule in egress}
    assert by_peer[str(JUDGE)] == [{"protocol": "TCP", "port": 8000}]
    assert by_peer[str(S3)] == [{"protocol": "TCP", "port": 9000}]
    hub = next(rule for rule in egress if "0.0.0.0/0" in str(rule["to"]))
    assert hub["ports"] == [{"protocol": "TCP", "port": 443}] and "10.0.0.0/8" in hub["to"][0]["ipBlock"]["except"]
    assert {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]} in egress
    # none of these by default
    defaults = str(trainer_policy(rendered, "defaults")["egress"])
    assert "0.0.0.0/0" not in defaults and "serving" not in defaults and "203.0.113.7" not in defaults


def test_policies_match_the_kubernetes_schema(rendered: dict[str, Any]) -> None:
    import kubernetes_validate

    for name in ("defaults", "judge-s3-hub", "open"):
        for policy in by_kind(documents(rendered[name]["manifest"]), "NetworkPolicy"):
            kubernetes_validate.validate(policy, "1.33.0", strict=True)


def test_egress_can_be_left_open(rendered: dict[str, Any]) -> None:
    spec = trainer_policy(rendered, "open")
    assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec


def test_hub_settings_reach_the_operator_and_its_trainer_pods(rendered: dict[str, Any]) -> None:
    from align_api import validate_document
    from align_operator.renderers import render_job
    from align_operator.settings import Settings

    job = validate_document({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "j"},
                             "spec": {"algorithm": "sft", "model": {"base": "Qwen/Qwen2.5-0.5B"},
                                      "data": {"train": {"uri": "file:///data/sft.jsonl"}}}})
    pods = {}
    for name in ("defaults", "judge-s3-hub"):
        settings = Settings.from_env(operator_env(rendered, name))
        container = render_job(job, "team", settings)["spec"]["template"]["spec"]["containers"][0]
        pods[name] = {e["name"]: e.get("value") for e in container["env"]}
    assert pods["defaults"]["HF_HUB_DISABLE_TELEMETRY"] == "1" and "HF_HUB_OFFLINE" not in pods["defaults"]
    assert "HF_HUB_DISABLE_TELEMETRY" not in pods["judge-s3-hub"] and pods["judge-s3-hub"]["HF_HUB_OFFLINE"] == "1"
    assert "offline" in rendered["bad-offline"].get("error", "")
