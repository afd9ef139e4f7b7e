"""alignctl submit / get / list / describe / logs / wait / suspend / resume / cancel: jobs on a cluster."""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn

from align_api import GROUP, PLURAL, ManifestError, Phase, load_file, load_text
from align_api.constants import TERMINAL_PHASES
from align_operator.cli import app
from align_operator.cli import job_views as views
from align_operator.cli.cluster import (EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, Context, Kubeconfig, Namespace, Server,
                                        cluster_errors, console, err_console, fail, is_tty, make_client)
from align_operator.client import AlignClient, phase_of

def complete_job_name(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of job names from the cluster the command line points at (silent on any error)."""
    params = ctx.params
    try:
        client = AlignClient(kubeconfig=params.get("kubeconfig"), context=params.get("context"),
                             namespace=params.get("namespace"), host=params.get("server"), request_timeout=3)
        names = [o["metadata"]["name"] for o in client.list()]
    except Exception:  # noqa: BLE001 - completion must never print a traceback into the shell
        return []
    return [name for name in names if name.startswith(incomplete)]


JobName = Annotated[str, typer.Argument(help="AlignmentJob name.", show_default=False,
                                        autocompletion=complete_job_name)]
RESOURCE = f"{PLURAL[:-1]}.{GROUP}"  # alignmentjob.align.dev, as kubectl prints it


class Output(StrEnum):
    table = "table"
    wide = "wide"
    yaml = "yaml"
    json = "json"
    name = "name"


# --- submit ------------------------------------------------------------------------------------------

@app.command(rich_help_panel="Jobs")
def submit(
    file: Annotated[str, typer.Argument(help="Manifest file (YAML, one or more AlignmentJobs), or - for stdin.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate on the server without persisting.")] = False,
    force_conflicts: Annotated[bool, typer.Option(
        "--force-conflicts", help="Take over fields another manager owns (server-side apply force).")] = False,
    wait_: Annotated[bool, typer.Option("--wait", help="Then wait until the job finishes; exit code mirrors it.")] = False,
    timeout: Annotated[float | None, typer.Option(help="With --wait: give up after this many seconds.")] = None,
    preflight: Annotated[bool, typer.Option(
        "--preflight/--no-preflight", help="For a file: first check here what the trainer checks before loading a "
        "model (local data files, grader templates against their rows, file:// outputs), as validate --preflight.")] = True,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Validate FILE and server-side apply it (create or update), like `kubectl apply --server-side`."""
    try:
        jobs = load_text(sys.stdin.read(), "<stdin>") if file == "-" else load_file(file)
    except ManifestError as exc:
        for error in exc.errors:
            err_console.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(EXIT_FAILED)
    if preflight and file != "-":
        from align_operator.cli.validate_cmd import preflight_paths
        problems = preflight_paths([Path(file)])
        for line in problems:
            err_console.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
        if problems:
            err_console.print("nothing was submitted (paths that exist only in the trainer image: --no-preflight)")
            raise typer.Exit(EXIT_FAILED)
    client = make_client(kubeconfig, context, namespace, server)
    for job in jobs:
        own_ns = job.metadata.namespace
        if namespace and own_ns and own_ns != namespace:
            fail(f"the namespace of {job.name!r} ({own_ns}) does not match --namespace {namespace}")
        with cluster_errors():
            obj, created = client.submit(job, dry_run=dry_run, force=force_conflicts)
        verb = "created" if created else "configured"
        name = (obj.get("metadata") or {}).get("name") or job.name
        console.print(f"{RESOURCE}/{name} {verb}{' (server dry run)' if dry_run else ''}")
    if wait_ and not dry_run:
        if len(jobs) != 1:
            fail("--wait needs exactly one job in the file")
        _wait_for(client, jobs[0].name or name, timeout)


# --- get / list ---------------------------------------------------------------------------------------

def _print_objects(objs: list[dict[str, Any]], output: Output, all_namespaces: bool, single: bool) -> None:
    if output == Output.name:
        for obj in objs:
            console.print(f"{RESOURCE}/{obj['metadata']['name']}")
        return
    if output in (Output.yaml, Output.json):
        data: Any = objs[0] if single else {"apiVersion": "v1", "kind": "List", "items": objs}
        text = yaml.safe_dump(data, sort_keys=False) if output == Output.yaml else json.dumps(data, indent=2)
        typer.echo(text.rstrip("\n"))
        return
    if not objs:
        err_console.print("No resources found.")
        return
    headers, rows = views.table_rows(objs, wide=output == Output.wide, all_namespaces=all_namespaces)
    typer.echo(views.format_table(headers, rows))


@app.command(rich_help_panel="Jobs")
def get(
    name: Annotated[str | None, typer.Argument(help="Job name; all jobs of the namespace when omitted.")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table, wide, yaml, json or name.")] = Output.table,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="List jobs of every namespace.")] = False,
    selector: Annotated[str | None, typer.Option("--selector", "-l", help="Label selector, e.g. team=nlp.")] = None,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Show jobs as a table with the CRD's printer columns (phase, algorithm, model, progress, age). NAME may be
    the --workdir of a finished `alignctl local run` (no cluster needed)."""
    if name and _is_path(name):
        objs = [obj for obj, _ in _saved(name)]
        _print_objects(objs, output, False, single=len(objs) == 1)
        return
    client = make_client(kubeconfig, context, namespace, server)
    with cluster_errors():
        objs = [client.get(name)] if name else client.list(all_namespaces=all_namespaces, label_selector=selector)
    _print_objects(objs, output, all_namespaces and not name, single=bool(name))


@app.command("list", rich_help_panel="Jobs")
def list_(
    output: Annotated[Output, typer.Option("--output", "-o", help="table, wide, yaml, json or name.")] = Output.table,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="List jobs of every namespace.")] = False,
    selector: Annotated[str | None, typer.Option("--selector", "-l", help="Label selector, e.g. team=nlp.")] = None,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """List jobs (same as `get` without a name)."""
    get(None, output, all_namespaces, selector, kubeconfig, context, namespace, server)


def _is_path(name: str) -> bool:
    """A local run's work directory (or a saved job file) rather than a job name (names have no '/')."""
    from align_operator.cli.local_cmd import SAVED_JOBS
    return (Path(name) / SAVED_JOBS).is_dir() or ("/" in name and Path(name).exists())


def _saved(path: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    from align_operator.cli.local_cmd import load_saved_jobs
    saved = load_saved_jobs(Path(path))
    if not saved:
        fail(f"{path}: no jobs saved by `alignctl local run` here (looked for {path}/jobs/*.json)")
    return saved


# --- describe -----------------------------------------------------------------------------------------

@app.command(rich_help_panel="Jobs")
def describe(
    name: JobName,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Spec summary, status, progress, latest metrics, conditions, last error, artifacts and events. NAME may be
    the --workdir of a finished `alignctl local run` holding one job (or the jobs/<name>.json file in it)."""
    if _is_path(name):
        saved = _saved(name)
        if len(saved) > 1:
            fail(f"{name} holds {len(saved)} jobs ({', '.join(o['metadata']['name'] for o, _ in saved)}): "
                 f"describe {name}/jobs/<name>.json")
        views.print_describe(console, *saved[0])
        return
    client = make_client(kubeconfig, context, namespace, server)
    with cluster_errors():
        obj = client.get(name)
        try:
            events = client.events(name)
        except Exception as exc:  # noqa: BLE001 - events are best effort (RBAC may forbid them)
            events = []
            err_console.print(f"[yellow]warning:[/yellow] cannot list events: {exc}")
    views.print_describe(console, obj, events)


# --- logs ---------------------------------------------------------------------------------------------

def _pods_or_wait(client: AlignClient, name: str, wait_seconds: float) -> list[dict[str, Any]]:
    """The trainer pods; with a wait, keep looking while the job has not started (a fresh submit)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        pods = client.trainer_pods(name)
        if pods:
            return pods
        phase = phase_of(client.get(name))
        if time.monotonic() >= deadline or phase in {p.value for p in TERMINAL_PHASES}:
            hint = ("its pods are gone (Job cleaned up after ttlSecondsAfterFinished?)" if phase in
                    {p.value for p in TERMINAL_PHASES} else "retry when it runs, or use `alignctl logs -f`")
            fail(f'no trainer pods for alignmentjob "{name}" (phase {phase}): {hint}')
        time.sleep(1.0)


@app.command(rich_help_panel="Jobs")
def logs(
    name: JobName,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new lines until the pod ends.")] = False,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
    container: Annotated[str | None, typer.Option("--container", "-c", help="Container (default: trainer).")] = None,
    all_pods: Annotated[bool, typer.Option("--all-pods", help="Every trainer pod (multi-node), prefixed.")] = False,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous (crashed) container's logs.")] = False,
    pod_wait: Annotated[float, typer.Option(help="With -f: seconds to wait for a pod to appear.")] = 120.0,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Trainer logs (rank 0 unless --all-pods)."""
    if follow and all_pods:
        fail("--follow streams one pod; drop --all-pods (or follow each pod with kubectl)")
    client = make_client(kubeconfig, context, namespace, server)
    with cluster_errors():
        pods = _pods_or_wait(client, name, pod_wait if follow else 0.0)
        chosen = pods if all_pods else pods[:1]
        for pod in chosen:
            pod_name = pod["metadata"]["name"]
            prefix = f"[{pod_name}] " if all_pods else ""
            for line in client.logs(pod_name, container=container or views.trainer_container(pod), follow=follow,
                                    tail=tail, previous=previous):
                typer.echo(prefix + line)


# --- wait ---------------------------------------------------------------------------------------------

class _Reporter:
    """How `wait` shows a job moving: a live progress bar on a terminal, phase changes in a log file."""

    def __init__(self) -> None:
        self.last_line: str | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> "_Reporter":
        if is_tty():
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[extra]}"),
                                      console=err_console)
            self._progress.start()
            self._task = self._progress.add_task("Pending", total=None, extra="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def show(self, obj: dict[str, Any]) -> None:
        line = views.one_line_status(obj)
        if self._progress is not None and self._task is not None:
            status = obj.get("status") or {}
            progress = status.get("progress") or {}
            loss = (status.get("metrics") or {}).get("loss")
            self._progress.update(self._task, description=phase_of(obj), completed=progress.get("step") or 0,
                                  total=progress.get("totalSteps"),
                                  extra=f"loss {views.format_number(loss)}" if loss is not None else "")
        elif self.last_line is None or self.last_line.split()[0] != line.split()[0]:
            err_console.print(line)
        self.last_line = line


def _wait_for(client: AlignClient, name: str, timeout: float | None) -> None:
    with cluster_errors(), _Reporter() as reporter:
        for obj in client.watch(name, timeout=timeout):
            reporter.show(obj)
            phase = phase_of(obj)
            if phase in {p.value for p in TERMINAL_PHASES}:
                break
        else:
            fail(f'timed out after {timeout}s waiting for alignmentjob "{name}" (last: {reporter.last_line})',
                 EXIT_TIMEOUT)
    console.print(f"{RESOURCE}/{name} {phase}")
    error = (obj.get("status") or {}).get("lastError")
    if phase == Phase.FAILED and error:
        err_console.print(f"[red]{error.get('reason')}:[/red] {error.get('message')}")
    raise typer.Exit(EXIT_OK if phase == Phase.SUCCEEDED else EXIT_FAILED)


@app.command(rich_help_panel="Jobs")
def wait(
    name: JobName,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 124).")] = None,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Wait until the job Succeeds (exit 0) or Fails (exit 1); exit 124 on --timeout."""
    client = make_client(kubeconfig, context, namespace, server)
    _wait_for(client, name, timeout)


# --- suspend / resume / cancel --------------------------------------------------------------------

def _set_suspend(name: str, suspend: bool, client: AlignClient) -> None:
    with cluster_errors():
        phase = phase_of(client.get(name))
        if phase in {p.value for p in TERMINAL_PHASES}:
            fail(f'alignmentjob "{name}" already {phase}; nothing to {"suspend" if suspend else "resume"}')
        client.set_suspend(name, suspend)
    console.print(f"{RESOURCE}/{name} {'suspended' if suspend else 'resumed'}")


@app.command(rich_help_panel="Jobs")
def suspend(
    name: JobName,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Stop the trainer pods and keep the job (spec.runPolicy.suspend: true); checkpoints let it resume."""
    _set_suspend(name, True, make_client(kubeconfig, context, namespace, server))


@app.command(rich_help_panel="Jobs")
def resume(
    name: JobName,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Resume a suspended job from its newest checkpoint."""
    _set_suspend(name, False, make_client(kubeconfig, context, namespace, server))


@app.command(rich_help_panel="Jobs")
def cancel(
    name: JobName,
    delete: Annotated[bool, typer.Option("--delete", help="Delete the AlignmentJob (its Job, pods and config go "
                                                          "with it) instead of keeping it as Cancelled.")] = False,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Cancel a job for good (spec.runPolicy.cancel: true): the trainer checkpoints and stops, the job ends in
    phase Cancelled and keeps its checkpoints, metrics and logs. `--delete` deletes the object instead."""
    client = make_client(kubeconfig, context, namespace, server)
    with cluster_errors():
        if delete:
            client.delete(name)
            console.print(f"{RESOURCE}/{name} deleted")
            return
        phase = phase_of(client.get(name))
        if phase in {p.value for p in TERMINAL_PHASES}:
            fail(f'alignmentjob "{name}" already {phase}; nothing to cancel')
        client.cancel(name)
    console.print(f"{RESOURCE}/{name} cancelling (phase Cancelled once its trainer pods have stopped)")

