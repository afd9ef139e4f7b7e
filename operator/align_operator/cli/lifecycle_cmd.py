"""alignctl events (one job's Kubernetes events and the trainer's milestones, as one time-ordered feed),
alignctl checkpoints (the checkpoints a job keeps, with their metrics) and alignctl promote (spec.promote.step)."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Annotated, Any

import typer

from align_api.constants import TERMINAL_PHASES
from align_operator.cli import app
from align_operator.cli import job_views as views
from align_operator.cli.cluster import (Context, Kubeconfig, Namespace, Server, cluster_errors, console, fail,
                                        make_client)
from align_operator.cli.jobs_cmd import RESOURCE, JobName
from align_operator.client import phase_of
from align_operator.feed import feed, fresh
from align_operator.status.promotion import refusal


class FeedOutput(StrEnum):
    table = "table"
    json = "json"


def _print(entries: list[dict[str, Any]], output: FeedOutput) -> None:
    if output == FeedOutput.json:  # one JSON object per line: a script reads the stream line by line
        for item in entries:
            typer.echo(json.dumps(item, sort_keys=True))
        return
    for item in entries:
        style = "yellow" if item["type"] == "Warning" else ""
        count = f" (x{item['count']})" if item["count"] > 1 else ""
        console.print(f"{item['time']}  {item['type']:<7}  {item['reason']:<20}  {item['object']:<28}  "
                      f"{item['message']}{count}", style=style, highlight=False, soft_wrap=True)


@app.command(rich_help_panel="Jobs")
def events(
    name: JobName,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until the job "
                                                                "finishes (or Ctrl-C).")] = False,
    output: Annotated[FeedOutput, typer.Option("--output", "-o", help="table, or json (one object a line).")]
    = FeedOutput.table,
    interval: Annotated[float, typer.Option(help="With --follow: seconds between looks.")] = 2.0,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """The job's events, oldest first: its own (phase changes, pause/resume, budget, checkpoints, evaluation,
    progress milestones posted by the operator) and those of its trainer Job and pods."""
    client = make_client(kubeconfig, context, namespace, server)
    seen: dict[str, tuple[str, int]] = {}
    with cluster_errors():
        while True:
            job = client.get(name)
            _print(fresh(feed(client.namespace_events(), job), seen), output)
            if not follow or phase_of(job) in {p.value for p in TERMINAL_PHASES}:
                if follow:  # the final events (phase change) may land just after the phase
                    time.sleep(min(interval, 1.0))
                    _print(fresh(feed(client.namespace_events(), client.get(name)), seen), output)
                return
            time.sleep(interval)


def checkpoint_rows(status: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of `alignctl checkpoints`: one row per kept checkpoint, a column per metric."""
    items = status.get("checkpoints") or []
    names: list[str] = []
    for item in items:
        for name in [*(item.get("metrics") or {}), *(item.get("evaluation") or {})]:
            if name not in names:
                names.append(name)
    names = names[:6]
    headers = ["STEP", "SAVED", *[n.upper() for n in names], "URI"]
    rows = []
    for item in items:
        values = {**(item.get("metrics") or {}), **(item.get("evaluation") or {})}
        rows.append([str(item["step"]), str(item.get("time") or ""),
                     *[("" if values.get(n) is None else f"{values[n]:.4g}") for n in names],
                     str(item.get("uri") or "(pod-local)")])
    return headers, rows


@app.command(rich_help_panel="Jobs")
def checkpoints(
    name: JobName,
    output: Annotated[FeedOutput, typer.Option("--output", "-o", help="table, or json (status.checkpoints).")]
    = FeedOutput.table,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """The checkpoints the job keeps (spec.checkpoints.keep newest): step, when saved, training metrics, the
    eval metrics where evaluation ran at that step, and where each is."""
    client = make_client(kubeconfig, context, namespace, server)
    with cluster_errors():
        status = client.get(name).get("status") or {}
    if output == FeedOutput.json:
        typer.echo(json.dumps(status.get("checkpoints") or [], indent=2, sort_keys=True))
        return
    headers, rows = checkpoint_rows(status)
    if not rows:
        console.print(f"no checkpoints listed for {name} yet (the trainer lists each one it keeps)")
        return
    typer.echo(views.format_table(headers, rows))  # kubectl's plain columns: never cut, easy to parse


def promote_problem(obj: dict[str, Any], step: int) -> str | None:
    """Why `alignctl promote` refuses `step` (None: it may be set): no checkpoint volume, or a step an ended job
    does not keep."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not (spec.get("checkpoints") or {}).get("volume"):
        return ("spec.promote needs spec.checkpoints.volume: this job's checkpoints were on an emptyDir and went "
                "with its pod")
    return refusal({"promote": {"step": step}}, status)


@app.command(rich_help_panel="Jobs")
def promote(
    name: JobName,
    step: Annotated[int, typer.Option("--step", min=1, help="The kept checkpoint's step (alignctl checkpoints).")],
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Publish a kept checkpoint as the job's final adapter (sets spec.promote.step; kubectl can too). Once training
    has ended the operator writes it over the final adapter, the model card naming the step, and re-runs the
    evaluation gates on it; condition Promoted says when it is done, status.promotion where."""
    client = make_client(kubeconfig, context, namespace, server)
    with cluster_errors():
        problem = promote_problem(client.get(name), step)
        if problem:
            fail(problem)
        client.promote(name, step)
    console.print(f"{RESOURCE}/{name} promoting checkpoint {step} (condition Promoted once published)")


__all__ = ["checkpoint_rows", "checkpoints", "events", "promote", "promote_problem"]
