"""spec.promote in the operator (pure): the plan (status/promotion.py), the promote Job (renderers/promote.py), the
events it posts (status/milestones.py), and `alignctl promote`'s refusal."""

from __future__ import annotations

import json
from typing import Any

from align_api import validate_document
from align_operator.cli.lifecycle_cmd import promote_problem
from align_operator.renderers.promote import promote_job_name, render_promote_job
from align_operator.settings import Settings
from align_operator.status.milestones import milestones
from align_operator.status.promotion import Action, apply, pending, plan, refusal

NOW = "2026-01-01T00:00:00Z"
KEPT = [{"step": 4, "uri": "pvc://ckpt/p/checkpoints/checkpoint-4"}, {"step": 8}]


def ended(phase: str = "Succeeded", **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "checkpoints": KEPT, "artifacts": {"adapter": "/mnt/pvc/ckpt/p/final"}, **extra}


def job(state: str | None) -> dict[str, Any]:
    conditions = [{"type": state, "status": "True"}] if state else []
    return {"metadata": {"name": "p-promote-4-2"}, "status": {"conditions": conditions}}


def pod(code: int, message: str) -> dict[str, Any]:
    return {"metadata": {"name": "p-promote-4-2-abcde"}, "status": {"containerStatuses": [{"state": {"terminated": {
        "exitCode": code, "message": message, "finishedAt": NOW}}}]}}


def test_waits_for_training_to_end_then_makes_one_job_then_publishes_its_record() -> None:
    assert plan(4, {"phase": "Running", "checkpoints": KEPT}, None, [], NOW).condition[1] == "PromotionWaiting"
    first = plan(4, ended(), None, [], NOW)
    assert first.action == Action.CREATE_JOB and first.condition[1] == "Promoting"
    running = plan(4, ended(), job(None), [], NOW)                    # made by an earlier pass: never a second
    assert running.action == Action.NONE and running.condition[1] == "Promoting"
    record = {"step": 4, "source": "pvc://ckpt/p/checkpoints/checkpoint-4", "adapter": "s3://out/p/adapter",
              "evaluation": {"winRate": 0.6}, "gates": ["winRate >= 0.5: passed (winRate=0.6)"]}
    done = plan(4, ended(), job("Complete"), [pod(0, json.dumps({"promoted": record}))], NOW)
    assert done.condition[:2] == ("True", "Promoted") and "checkpoint-4" in done.condition[2]
    assert "winRate >= 0.5: passed" in done.condition[2]
    status = apply(ended(), done, 2, NOW)
    assert status["promotion"] == {**record, "time": NOW}
    assert status["artifacts"] == {"adapter": "s3://out/p/adapter"}       # what job://p reads from now on
    assert status["evaluation"] == {"winRate": 0.6}
    assert not pending({"promote": {"step": 4}}, status, 2)            # settled: the task may end
    assert pending({"promote": {"step": 8}}, status, 3)                # another step: promote again


def test_a_step_not_kept_is_refused_with_the_kept_steps_and_no_job() -> None:
    refused = plan(5, ended(), None, [], NOW)
    assert refused.action == Action.NONE
    assert refused.condition == ("False", "PromoteStepNotFound",
                                 "step 5: spec.promote.step: no checkpoint at step 5; kept: 4, 8")
    status = apply(ended(), refused, 3, NOW)
    assert not pending({"promote": {"step": 5}}, status, 3)            # final for this generation
    assert pending({"promote": {"step": 5}}, status, 4)                # a spec edit tries again
    assert refusal({"promote": {"step": 5}}, {"phase": "Running", "checkpoints": KEPT}) is None  # may still come
    assert "promote" not in status and status["artifacts"]["adapter"] == "/mnt/pvc/ckpt/p/final"


def test_a_failed_gate_or_a_crash_says_why_and_publishes_nothing() -> None:
    gate = plan(4, ended(), job("Failed"), [pod(13, "EvaluationGateFailed: evaluation gate failed: winRate >= 0.9: "
                                                    "FAILED (winRate=0.5)")], NOW)
    assert gate.condition[:2] == ("False", "EvaluationGateFailed") and "winRate >= 0.9" in gate.condition[2]
    assert gate.promotion is None
    crash = plan(4, ended(), job("Failed"), [pod(1, "TrainerError: RuntimeError: boom")], NOW)
    assert crash.condition[:2] == ("False", "PromotionFailed") and "boom" in crash.condition[2]


def test_promoted_events_follow_the_condition() -> None:
    before = ended(conditions=[])
    after = apply(before, plan(4, ended(), None, [], NOW), 2, NOW)
    assert milestones(before, after) == [("Normal", "Promoting", "step 4: publishing the checkpoint")]
    assert milestones(after, after) == []
    record = {"step": 4, "source": "s", "adapter": "a"}
    done = apply(after, plan(4, ended(), job("Complete"), [pod(0, json.dumps({"promoted": record}))], NOW), 2, NOW)
    assert [(t, r) for t, r, _ in milestones(after, done)] == [("Normal", "Promoted")]
    failed = apply(after, plan(9, ended(), None, [], NOW), 2, NOW)
    assert [(t, r) for t, r, _ in milestones(after, failed)] == [("Warning", "PromoteStepNotFound")]


def test_the_promote_job_runs_the_promote_entry_point_once_on_the_trainers_volume() -> None:
    aj = validate_document({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                            "metadata": {"name": "p", "uid": "u-1"},
                            "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"},
                                     "data": {"train": {"uri": "d.jsonl"}}, "resources": {"gpusPerNode": 1},
                                     "checkpoints": {"volume": "ckpt"}, "promote": {"step": 4},
                                     "runPolicy": {"suspend": True, "activeDeadlineSeconds": 600}}})
    rendered = render_promote_job(aj, "ns", Settings(), 4, 2)
    assert rendered["metadata"]["name"] == promote_job_name("p", 4, 2) == "p-promote-4-2"
    spec = rendered["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 0)
    assert not {"suspend", "completionMode", "activeDeadlineSeconds"} & set(spec)
    assert rendered["metadata"]["labels"]["app.kubernetes.io/component"] == "promote"
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "promote"
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"] == ["-m", "align_trainer.promote", "--config", "/etc/align/job.yaml", "--step", "4",
                                 "--output", "/mnt/pvc/ckpt/p"]
    assert {"name": "pvc-0", "mountPath": "/mnt/pvc/ckpt"} in container["volumeMounts"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "ports" not in container and "subdomain" not in spec["template"]["spec"]
    assert len(promote_job_name("x" * 63, 123456, 99)) <= 63


def test_alignctl_promote_refuses_what_the_operator_would() -> None:
    obj = {"spec": {"checkpoints": {"volume": "ckpt"}}, "status": ended()}
    assert promote_problem(obj, 4) is None
    assert promote_problem(obj, 6) == "spec.promote.step: no checkpoint at step 6; kept: 4, 8"
    assert "spec.checkpoints.volume" in (promote_problem({"spec": {}, "status": ended()}, 4) or "")


def test_job_name_of_a_promoting_upstream_waits_for_the_promoted_adapter_then_reads_it() -> None:
    from align_operator.upstream import resolve
    refs = {"spec.model.adapter.init": "src"}
    upstream = {"metadata": {"generation": 2}, "spec": {"promote": {"step": 4}}, "status": ended()}
    assert resolve(refs, {"src": upstream}).waiting == ["src"]          # not the last step's adapter
    record = {"step": 4, "source": "s", "adapter": "/mnt/pvc/ckpt/src/final"}
    upstream["status"] = apply(upstream["status"], plan(4, ended(), job("Complete"), [
        pod(0, json.dumps({"promoted": record}))], NOW), 2, NOW)
    assert resolve(refs, {"src": upstream}).resolved == {"job://src": "/mnt/pvc/ckpt/src/final"}
    upstream["status"]["phase"] = "Cancelled"                           # a cancelled job's promotion counts too
    assert resolve(refs, {"src": upstream}).resolved == {"job://src": "/mnt/pvc/ckpt/src/final"}
    refused = {"metadata": {"generation": 3}, "spec": {"promote": {"step": 5}},
               "status": apply(ended(), plan(5, ended(), None, [], NOW), 3, NOW)}
    assert "could not promote checkpoint 5: PromoteStepNotFound" in resolve(refs, {"src": refused}).failed[0]


def test_promote_jobs_and_pods_are_indexed_apart_from_the_trainers() -> None:
    """The lifecycle and usage read the trainer's Job and pods only: a promote pod is neither a trainer to stop
    nor time to bill, and a promote Job must never be taken for the trainer Job."""
    import asyncio

    from align_operator.handlers.track import index_jobs, index_pods
    trainer = {"align.dev/job": "p", "app.kubernetes.io/component": "trainer"}
    promote = {"align.dev/job": "p", "app.kubernetes.io/component": "promote"}
    body = {"metadata": {"name": "x"}, "spec": {}, "status": {}}
    for index in (index_jobs, index_pods):
        assert list(asyncio.run(index(namespace="ns", labels=trainer, body=body))) == [("ns", "p")]
        assert list(asyncio.run(index(namespace="ns", labels=promote, body=body))) == [("ns", "p", "promote")]
