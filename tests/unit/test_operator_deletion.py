"""Deleting never waits for the operator: no handler asks Kopf for a finalizer (no daemons, timers or deletion
handlers: Kopf gives those one), and each job's status task, the operator's own, ends when its AlignmentJob is
deleted. Only Kopf's public API: the registrations in main.py are read from its source."""

from __future__ import annotations

import ast
import asyncio
import inspect
from typing import Any

import kopf

from align_operator.handlers import track
from align_operator.handlers.setup import Wakeups
from align_operator.settings import Settings


def test_no_handler_of_the_operator_asks_kopf_for_a_finalizer() -> None:
    from align_operator import main
    calls = {ast.unparse(node.func) for node in ast.walk(ast.parse(inspect.getsource(main)))
             if isinstance(node, ast.Call)}
    registrations = {c for c in calls if c.startswith(("kopf.on.", "kopf.daemon", "kopf.timer", "kopf.index"))}
    assert "kopf.on.event" in registrations and "kopf.on.create" in registrations, registrations
    assert not {c for c in registrations if c in ("kopf.daemon", "kopf.timer", "kopf.on.delete")}, registrations


def body(phase: str, version: str = "1") -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
            "metadata": {"name": "j", "namespace": "ns", "resourceVersion": version}, "spec": {},
            "status": {"phase": phase}}


def test_the_status_task_starts_for_a_live_job_and_ends_when_it_is_deleted() -> None:
    memo = kopf.Memo(settings=Settings(status_interval_seconds=3600, scrape_interval_seconds=3600),
                     wakeups=Wakeups(), client=None)
    key = ("ns", "j")

    async def event(type: str | None, phase: str = "Running") -> None:
        await track.follow(type=type, body=body(phase), name="j", namespace="ns", memo=memo, logger=None,
                           index_jobs={}, index_pods={})

    async def scenario() -> None:
        await event(None, "Succeeded")  # a finished job (operator start-up listing): no task
        assert not memo.wakeups.running(key)
        await event(None)
        await asyncio.sleep(0.05)
        first = memo.wakeups._tasks[key]
        assert memo.wakeups.running(key)
        await event("MODIFIED")  # only deletion ends it, and one task per job
        await asyncio.sleep(0.05)
        assert memo.wakeups.running(key) and memo.wakeups._tasks[key] is first
        await event("DELETED")
        await asyncio.wait_for(first, timeout=5)
        assert not memo.wakeups.running(key)
        await event("ADDED")  # a new object of that name gets a fresh task
        await asyncio.sleep(0.05)
        assert memo.wakeups.running(key) and memo.wakeups._tasks[key] is not first
        await memo.wakeups.close()  # the operator's cleanup cancels it
        assert not memo.wakeups.running(key)
    asyncio.run(scenario())
