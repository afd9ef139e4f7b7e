"""The generated CRD and every example against real API servers: kube-apiserver 1.20 and apiextensions-apiserver 1.36.

The emulator once accepted a CRD that every real server rejects (a description on the root metadata); these tests
install what we ship on the real servers, so that class of bug cannot ship again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from align_api import crd
from align_api.constants import GROUP, PLURAL, VERSION
from tests.realk8s import RealCluster, as_json

pytestmark = [pytest.mark.realk8s]

REPO = Path(__file__).resolve().parents[2]
CRD_FILES = [REPO / "crds" / crd.CRD_FILE, REPO / "charts" / "align-operator" / "crds" / crd.CRD_FILE,
             REPO / "deploy" / "kustomize" / "base" / "crd.yaml"]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CR_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{PLURAL}"


@pytest.fixture(scope="module")
def installed(realk8s: RealCluster) -> RealCluster:
    realk8s.install_crd(crd=False)
    realk8s.install_crd(crd=True)
    return realk8s


@pytest.mark.parametrize("crd_server", [False, True], ids=["core-1.20", "crd-1.36"])
def test_every_shipped_crd_copy_is_accepted_by_a_real_server(realk8s: RealCluster, crd_server: bool) -> None:
    # Server-side dry run of every copy (crds/, chart, kustomize base): the real validation, nothing persisted.
    with realk8s.client(crd=crd_server) as c:
        for path in CRD_FILES:
            body = yaml.safe_load(path.read_text())
            r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All", json=body)
            if r.status_code == 409:  # installed by another test file: a dry-run update validates the same way
                current = c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd.CRD_NAME}").json()
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                r = c.put(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd.CRD_NAME}?dryRun=All",
                          json=body)
            assert r.status_code in (200, 201), f"{path.relative_to(REPO)} rejected: {r.text}"


def test_a_described_root_metadata_is_rejected_by_the_real_server(realk8s: RealCluster) -> None:
    # The check above must be able to fail: the bug we shipped once is caught by the same call.
    body = yaml.safe_load(CRD_FILES[0].read_text())
    body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["metadata"]["description"] = "x"
    r = realk8s.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?dryRun=All", body, crd=True)
    assert r.status_code == 422 and "metadata" in r.text, r.text


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_created_on_the_cel_server(installed: RealCluster, example: Path) -> None:
    ns = "default"
    for doc in yaml.safe_load_all(example.read_text()):
        if not doc or doc.get("kind") != "AlignmentJob":
            continue
        r = installed.api("POST", CR_PATH.format(ns=ns) + "?dryRun=All&fieldValidation=Strict", doc, crd=True)
        assert r.status_code == 201, f"{example.name}: {r.text}"
        assert not r.headers.get("Warning"), f"{example.name}: {r.headers.get('Warning')}"


def _job(name: str) -> dict:
    doc = yaml.safe_load((REPO / "examples" / "dpo.yaml").read_text())
    doc["metadata"] = {"name": name}
    return doc


@pytest.mark.parametrize("field, value, message", [
    ("algorithm", "kto", "spec.algorithm is immutable"),
    ("model", {"base": "builtin://small"}, "spec.model is immutable"),
])
def test_cel_immutability_rules_fire_on_the_1_36_server(installed: RealCluster, field: str, value: object,
                                                        message: str) -> None:
    name = f"immut-{field}"
    with installed.client(crd=True) as c:
        assert c.post(CR_PATH.format(ns="default"), json=_job(name)).status_code == 201
        patch = {"spec": {field: value}}
        r = c.patch(f"{CR_PATH.format(ns='default')}/{name}", content=json.dumps(patch),
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 422, r.text
        assert message in r.text
        # A mutable field still updates.
        r = c.patch(f"{CR_PATH.format(ns='default')}/{name}", content=json.dumps({"spec": {"output": {"merge": True}}}),
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text


def test_cancel_cannot_be_unset_on_the_1_36_server(installed: RealCluster) -> None:
    path = f"{CR_PATH.format(ns='default')}/cancelled"
    merge = {"Content-Type": "application/merge-patch+json"}
    with installed.client(crd=True) as c:
        assert c.post(CR_PATH.format(ns="default"), json=_job("cancelled")).status_code == 201
        r = c.patch(path, content=json.dumps({"spec": {"runPolicy": {"cancel": True}}}), headers=merge)
        assert r.status_code == 200, r.text
        r = c.patch(path, content=json.dumps({"spec": {"runPolicy": {"cancel": False}}}), headers=merge)
        assert r.status_code == 422 and "spec.runPolicy.cancel cannot be unset" in r.text, r.text
        r = c.patch(path, content=json.dumps({"spec": {"runPolicy": {"suspend": True}}}), headers=merge)
        assert r.status_code == 200, r.text                               # the rest of runPolicy stays mutable


def test_online_algorithm_without_grader_is_rejected_by_cel(installed: RealCluster) -> None:
    doc = yaml.safe_load((REPO / "examples" / "grpo.yaml").read_text())
    doc["spec"].pop("grader")
    doc["metadata"] = {"name": "no-grader"}
    r = installed.api("POST", CR_PATH.format(ns="default") + "?dryRun=All", doc, crd=True)
    assert r.status_code == 422 and "grader is required" in r.text, r.text


def test_kubectl_get_explain_and_printer_columns_on_the_core_server(installed: RealCluster) -> None:
    ns = installed.namespace("kubectl")
    applied = installed.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "dpo.yaml"))
    assert "created" in applied.stdout
    table = installed.kubectl("get", "aj", "-n", ns).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "ALGORITHM", "MODEL", "PROGRESS", "GPU-H", "AGE"], table   # Pod-h: -o wide
    assert "dpo" in table and "builtin://tiny" in table
    explained = installed.kubectl("explain", "alignmentjob.spec.hyperparameters.beta").stdout
    assert "beta" in explained.lower() and "FIELD" in explained
    listed = as_json(installed.kubectl("get", "alignmentjobs.align.dev", "-n", ns, "-o", "json"))
    assert [item["spec"]["algorithm"] for item in listed["items"]] == ["dpo"]
