"""alignctl events: one job's Kubernetes events and the trainer's milestones, as one time-ordered feed."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Annotated, Any

import typer

from align_api.constants import TERMINAL_PHASES
from align_operator.cli import app
from align_operator.cli.cluster import Context, Kubeconfig, Namespace, Server, cluster_errors, console, make_client
from align_operator.cli.jobs_cmd import JobName
from align_operator.client import phase_of
from align_operator.feed import feed, fresh


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


__all__ = ["events"]
