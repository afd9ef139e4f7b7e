"""What bounds the operator's memory with many live jobs (bench/operator_scale.py --real measures it; these tests
catch a regression structurally, without timing): indexes hold summaries, Kopf's HTTP pool is bounded, routine
handlers stay on the event loop, only our children are watched, and creations in flight are bounded."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import references

from align_operator.handlers import reconcile, setup, track
from align_operator.settings import Settings

#: A Job as the real 1.20 server returns it: managedFields, labels, a full pod template (7.5 KB of JSON).
JOB = {
    "apiVersion": "batch/v1", "kind": "Job",
    "metadata": {"name": "a-trainer", "namespace": "default", "uid": "u-1", "resourceVersion": "42",
                 "labels": {"align.dev/job": "a", "app.kubernetes.io/managed-by": "align-operator"},
                 "annotations": {"align.dev/spec-hash": "abc"},
                 "ownerReferences": [{"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "name": "a",
                                      "uid": "u-0", "controller": True, "blockOwnerDeletion": True}],
                 "managedFields": [{"manager": "Python", "operation": "Update", "apiVersion": "batch/v1",
                                    "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:spec": {f"f:field{i}": {} for i in range(200)}}}]},
    "spec": {"suspend": False, "backoffLimit": 3, "template": {"spec": {"containers": [
        {"name": "trainer", "image": "img", "args": ["--config", "/etc/align/job.yaml"] * 50}]}}},
    "status": {"active": 1, "startTime": "2026-11-30T00:00:00Z"},
}


def test_index_entries_hold_only_what_the_status_logic_reads() -> None:
    summary = asyncio.run(track.index_jobs(namespace="default", labels=JOB["metadata"]["labels"],
                                           body=kopf.Body(JOB)))[("default", "a")]
    assert summary == {"metadata": {"name": "a-trainer", "annotations": {"align.dev/spec-hash": "abc"}, "uid": "u-1",
                                    "deletionTimestamp": None},
                       "spec": {"suspend": False}, "status": {"active": 1, "startTime": "2026-11-30T00:00:00Z"}}
    assert len(json.dumps(summary)) * 10 < len(json.dumps(JOB))


def test_routine_event_handlers_are_coroutines() -> None:
    # Kopf runs a plain function in its thread pool: a thread hop per event and handler (CPU), and a malloc
    # arena per pool thread (RSS). These run on every Job, pod and AlignmentJob event.
    for handler in (track.index_jobs, track.index_pods, track.wake, track.phase_metric):
        assert inspect.iscoroutinefunction(handler), handler.__name__


@pytest.mark.parametrize("namespaces", [(), ("a", "b", "c")])
def test_kopf_http_pool_is_bounded_with_room_for_every_watch_stream(namespaces: tuple[str, ...]) -> None:
    settings = Settings(api_connections=7, namespaces=namespaces)

    async def session_limit() -> int:
        session = setup.kopf_session(kopf.ConnectionInfo(server="http://127.0.0.1:1", token="t", scheme="Bearer"),
                                     settings)
        try:
            assert session.aiohttp_session.headers["Authorization"] == "Bearer t"
            return int(session.aiohttp_session.connector.limit)  # type: ignore[union-attr]
        finally:
            await session.aiohttp_session.close()
    limit = asyncio.run(session_limit())
    # Kopf's own session is unlimited (limit=0); ours is bounded, and never smaller than its long-lived watches.
    assert limit == 7 + setup.watch_streams(namespaces)
    assert limit > setup.WATCHES_PER_NAMESPACE * max(1, len(namespaces)) + setup.CLUSTER_WATCHES - 1


def test_login_hands_kopf_the_bounded_session(tmp_path: Any) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: c, cluster: "
                      "{server: 'http://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\n"
                      "contexts: [{name: c, context: {cluster: c, user: u}}]\n")

    async def login() -> Any:
        result = await setup.login(memo=kopf.Memo(kubeconfig=str(config), settings=Settings(api_connections=3)))
        await result.aiohttp_session.close()
        return result
    result = asyncio.run(login())
    assert isinstance(result, kopf.AiohttpSession) and result.server == "http://127.0.0.1:1"


def test_only_our_jobs_and_pods_are_watched() -> None:
    settings = kopf.OperatorSettings()
    setup.configure(settings, Settings())
    jobs = references.Resource(group="batch", version="v1", plural="jobs", kind="Job", namespaced=True)
    pods = references.Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)
    cms = references.Resource(group="", version="v1", plural="configmaps", kind="ConfigMap", namespaced=True)
    expected = ["align.dev/job,app.kubernetes.io/managed-by=align-operator"]
    assert settings.watching.label_selectors.collect(jobs) == expected
    assert settings.watching.label_selectors.collect(pods) == expected
    assert settings.watching.label_selectors.collect(cms) == []


def test_creations_in_flight_are_bounded_by_the_memo_semaphore() -> None:
    async def scenario() -> None:
        gate = asyncio.Semaphore(1)
        await gate.acquire()  # every slot taken
        memo = kopf.Memo(creations=gate, settings=Settings(), client=None)
        body = kopf.Body({"metadata": {"name": "a", "namespace": "default"}, "spec": {},
                          "status": {"phase": "Succeeded"}})
        task = asyncio.create_task(reconcile.reconcile(
            body=body, spec=body.spec, status=body.status, name="a", namespace="default", meta=body.meta,
            patch=kopf.Patch(), memo=memo, logger=None))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert not task.done(), "reconcile ran without a free creation slot"
        gate.release()
        await asyncio.wait_for(task, timeout=5)
    asyncio.run(scenario())


class _NoCopy(dict):  # type: ignore[type-arg]
    def __deepcopy__(self, memo: Any) -> Any:
        raise AssertionError("deep-copied a part of the object the essence throws away")


def test_last_handled_configuration_is_kopfs_essence_without_copying_what_it_drops() -> None:
    raw = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
           "metadata": {"name": "a", "labels": {"team": "x"}, "annotations": {"note": "y", "align.dev/kopf-managed": "1"},
                        "managedFields": [_NoCopy(manager="kubectl")], "resourceVersion": "7"},
           "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}}, "status": _NoCopy(phase="Running")}
    ours = setup.SlimDiffBaseStorage(prefix="align.dev", key="last-handled-configuration")
    essence = ours.build(body=kopf.Body(raw))
    plain = dict(raw, status={"phase": "Running"})
    plain["metadata"] = dict(raw["metadata"], managedFields=[{"manager": "kubectl"}])
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="align.dev", key="last-handled-configuration")
    assert essence == kopfs.build(body=kopf.Body(plain))
    assert essence["spec"] == raw["spec"] and "status" not in essence


def test_operator_uses_the_slim_diffbase() -> None:
    settings = kopf.OperatorSettings()
    setup.configure(settings, Settings())
    assert isinstance(settings.persistence.diffbase_storage, setup.SlimDiffBaseStorage)


def test_trainer_config_dump_round_trips_every_example() -> None:
    import yaml

    from align_api import load_file
    from align_operator.renderers.configmap import _DUMPER, dump_config, trainer_config
    assert _DUMPER is getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
    for path in examples:
        for job in load_file(path):
            config = trainer_config(job)
            assert yaml.safe_load(dump_config(config)) == config, path
