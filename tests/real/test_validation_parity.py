"""Validation parity, both ways, on real API servers: what `alignctl validate` rejects, `kubectl apply` rejects
(through the operator's admission webhook), and what the real servers reject, alignctl rejects.

The corpus (tests/real/parity_corpus.py) goes as YAML files through `alignctl validate` and through
kubectl, which reads YAML as kubectl does and sends what kubectl sends, to
- the core server (kube-apiserver 1.20), with `kubectl apply --dry-run=server`: kubectl's schema validation from
  the CRD's published OpenAPI, then the operator's admission webhook;
- the CRD server (apiextensions-apiserver 1.36), with the JSON kubectl makes of each file: structural schema,
  CEL rules, fieldValidation=Strict, and the same webhook (its registrations come from the core server).
A manifest is rejected by "the cluster" when either server rejects it. Any disagreement fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from align_operator.cli.validate_cmd import validate_paths
from tests.real.parity_corpus import corpus
from tests.real.webhook_support import ServedWebhook, served_webhook
from tests.realk8s import RealCluster

pytestmark = [pytest.mark.realk8s]

WEBHOOK_DENIED = 'admission webhook "validate-spec.align.dev" denied the request: '
ERROR_START = re.compile(r'(?=error validating "|Error from server|resource mapping not found|'
                         r'error when retrieving current configuration)')


@pytest.fixture(scope="module")
def webhook(realk8s: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> ServedWebhook:
    with served_webhook(realk8s, tmp_path_factory.mktemp("webhook"), crd_servers=(False, True)) as served:
        yield served


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    out = {}
    for case, text in corpus().items():
        out[case] = root / f"{case}.yaml"
        out[case].write_text(text)
    return out


def kubectl_verdicts(cluster: RealCluster, files: dict[str, Path]) -> dict[str, str | None]:
    """Core server: case -> None if `kubectl apply --dry-run=server` accepted it, else kubectl's error for that file."""
    root = next(iter(files.values())).parent
    proc = cluster.kubectl("apply", "--dry-run=server", "-f", str(root), check=False, timeout=300)
    # kubectl joins client-side errors of several files on one line: split before each error's opening words.
    errors = [e for e in ERROR_START.split(proc.stderr) if e.strip() and not e.startswith("Warning:")]
    verdicts: dict[str, str | None] = {}
    for case, path in files.items():
        mine = [error.strip() for error in errors if f'"{path}"' in error]
        assert len(mine) <= 1, mine
        verdicts[case] = mine[0] if mine else None
    accepted = len(re.findall(r"\(server dry run\)", proc.stdout))
    # Every file is accounted for: accepted ones printed "created (server dry run)", the others an error.
    assert accepted == sum(v is None for v in verdicts.values()), (proc.stdout, proc.stderr)
    return verdicts


def crd_server_verdicts(cluster: RealCluster, files: dict[str, Path]) -> dict[str, str | None]:
    """CRD server 1.36: the JSON kubectl sends for each file (kubectl's own YAML reading, mapped on the core server),
    created with dryRun=All and fieldValidation=Strict, as `kubectl apply --validate=strict` does on a 1.27+ server.
    (kubectl cannot talk to the standalone apiextensions-apiserver itself: it serves no /api discovery.)"""
    root = next(iter(files.values())).parent
    proc = cluster.kubectl("create", "--dry-run=client", "--validate=false", "-o", "json", "-f", str(root),
                           check=False, timeout=300)
    items, decoder, at = [], json.JSONDecoder(), 0
    while proc.stdout[at:].strip():  # one JSON document per object, back to back
        item, at = decoder.raw_decode(proc.stdout, at + len(proc.stdout[at:]) - len(proc.stdout[at:].lstrip()))
        items.extend(item.get("items", [item]) if item.get("kind", "").endswith("List") else [item])
    by_name = {(item.get("metadata") or {}).get("name"): item for item in items}
    verdicts: dict[str, str | None] = {}
    with cluster.client(crd=True) as client:
        for case, path in files.items():
            name = (yaml.safe_load(path.read_text()).get("metadata") or {}).get("name")
            item = by_name.get(name)
            if item is None:  # kubectl itself refused the file (no REST mapping for its kind, ...)
                error = [line for line in proc.stderr.splitlines() if f'"{path}"' in line]
                assert error, f"{case}: kubectl neither converted nor refused it:\n{proc.stderr}"
                verdicts[case] = "\n".join(error)
                continue
            ns = (item.get("metadata") or {}).get("namespace") or "default"
            r = client.post(f"/apis/align.dev/v1alpha1/namespaces/{ns}/alignmentjobs",
                            params={"dryRun": "All", "fieldValidation": "Strict"}, json=item)
            verdicts[case] = None if r.status_code == 201 else f"{r.status_code}: {r.json().get('message')}"
    return verdicts


def _namespaces(cluster: RealCluster, files: dict[str, Path]) -> None:
    for path in files.values():
        for ns in re.findall(r"(?m)^  namespace: *(\S+)", path.read_text()):
            cluster.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})


def test_zero_disagreements_between_alignctl_and_the_real_servers(realk8s: RealCluster, webhook: ServedWebhook,
                                                                  files: dict[str, Path]) -> None:
    _namespaces(realk8s, files)
    ours = {case: validate_paths([path])[1] for case, path in files.items()}
    core = kubectl_verdicts(realk8s, files)
    cel = crd_server_verdicts(realk8s, files)
    disagreements = []
    for case in files:
        cluster_rejects = core[case] is not None or cel[case] is not None
        if bool(ours[case]) != cluster_rejects:
            disagreements.append(f"{case}: alignctl {'rejects' if ours[case] else 'accepts'} "
                                 f"({'; '.join(ours[case])}), core: {core[case] or 'accepts'}, "
                                 f"1.36: {cel[case] or 'accepts'}")
    assert not disagreements, "\n".join(disagreements)
    rejected = sum(bool(v) for v in ours.values())
    print(f"parity: {len(files)} manifests, {rejected} rejected by alignctl and the cluster, "
          f"{sum(core[c] is not None for c in files)} by the core server (kubectl schema + webhook), "
          f"{sum(cel[c] is not None for c in files)} by the 1.36 server (schema + CEL + strict fields + webhook), "
          f"{sum(WEBHOOK_DENIED in (core[c] or '') for c in files)} by the webhook on the core server; 0 disagreements")
    assert len(files) >= 90 and 20 <= len(files) - rejected and rejected >= 60, (len(files), rejected)
    # The webhook carried part of the verdict (the rest is the servers' own schema and CEL checks) ...
    by_webhook = [case for case in files if WEBHOOK_DENIED in (core[case] or "")]
    assert len(by_webhook) >= 15, by_webhook
    # ... with alignctl's own words: the same path and message, because it is the same align_api code.
    for case in by_webhook:
        first = ours[case][0].split(": ", 1)[1]  # drop "file:line"
        assert first in core[case], (case, first, core[case])


def test_kubectl_apply_of_a_grader_that_does_not_compile_fails_at_apply_time(
        realk8s: RealCluster, webhook: ServedWebhook, files: dict[str, Path]) -> None:
    path = files["invalid-python-does-not-compile"]
    ns = realk8s.namespace("apply")
    applied = realk8s.kubectl("apply", "-n", ns, "-f", str(path), check=False)
    assert applied.returncode == 1
    problems = validate_paths([path])[1]
    assert len(problems) == 1
    field_path, message = problems[0].split(": ", 1)[1].split(": ", 1)
    assert field_path == "spec.grader.source"
    assert f"{WEBHOOK_DENIED}spec.grader.source: {message}" in applied.stderr, applied.stderr
    assert realk8s.kubectl("get", "aj", "-n", ns, "-o", "name").stdout == ""  # nothing was stored
    # The same command from the CLI, as a user runs it.
    cli = subprocess.run(["alignctl", "validate", str(path)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1 and "spec.grader.source: " + message in " ".join(cli.stderr.split())


def test_spec_updates_are_checked_and_metadata_updates_are_not_blocked(realk8s: RealCluster,
                                                                       webhook: ServedWebhook) -> None:
    ns = realk8s.namespace("update")
    path = f"/apis/align.dev/v1alpha1/namespaces/{ns}/alignmentjobs"
    job = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "upd"},
           "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "d.jsonl"}}}}
    assert realk8s.api("POST", path + "?dryRun=All", job).status_code == 201
    patch = {"Content-Type": "application/merge-patch+json"}
    with realk8s.client() as c:
        assert c.post(path, json=job).status_code == 201
        bad = c.patch(f"{path}/upd", content='{"spec": {"hyperparameters": {"numGenerations": 4}}}', headers=patch)
        assert bad.status_code == 422 and "spec.hyperparameters.numGenerations: is not used by algorithm 'dpo'" in bad.text
        good = c.patch(f"{path}/upd", content='{"metadata": {"labels": {"team": "a"}}}', headers=patch)
        assert good.status_code == 200, good.text
        # Deleted while the operator runs, so no finalizer of its outlives it (the fixture then removes the CRD).
        assert c.delete(f"{path}/upd").status_code == 200
        for _ in range(300):
            if c.get(f"{path}/upd").status_code == 404:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("AlignmentJob upd was not deleted within 30 s")
