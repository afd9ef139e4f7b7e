"""alignctl local run / up / down / status: a manifest end to end on this machine (emulated API, the real operator,
pods as processes), or a persistent local control plane that kubectl and alignctl use as a cluster."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from align_api import ManifestError, load_file
from align_api.constants import TERMINAL_PHASES

from . import app

local_app = typer.Typer(help="Run AlignmentJobs in a local cluster (emulated or real control plane, the real "
                                  "operator, pods as local processes; no cluster needed).", no_args_is_help=True)
app.add_typer(local_app, name="local")
_err = Console(stderr=True)

#: The local cluster lives in its own package (align_localcluster), with its own extra; the operator image has neither.
LOCAL_EXTRA = "local"


def local_package(module: str = "") -> Any:
    """align_localcluster (or one of its modules), imported on first use; a clear error when the `local` extra
    (the package or one of its dependencies, e.g. kmock) is not installed."""
    name = "align_localcluster" + (f".{module}" if module else "")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.startswith("align_") and missing != "align_localcluster":
            raise  # a module of ours is missing: a bug, not an install choice
        _err.print(f"[red]error:[/red] alignctl local needs the local cluster ({missing or exc} is not installed): "
                   + escape(f"pip install 'align-operator[{LOCAL_EXTRA}]'"), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None

_PATH_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".py", ".txt")


def absolutize(value: Any, base: Path) -> Any:
    """Relative file paths in a spec, made absolute against the manifest's directory (pods run elsewhere)."""
    if isinstance(value, dict):
        return {k: absolutize(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [absolutize(v, base) for v in value]
    if not isinstance(value, str) or value.startswith("/"):
        return value
    if value.startswith("file://") and not value.startswith("file:///"):
        target = base / value[len("file://"):]
        return f"file://{target.resolve()}" if target.exists() else value
    if "://" in value:
        return value
    if value.startswith(("./", "../")) or value.endswith(_PATH_SUFFIXES):
        target = base / value
        return str(target.resolve()) if target.exists() else value
    return value


def _documents(path: Path) -> list[dict[str, Any]]:
    jobs = load_file(path)  # validates; ManifestError names file, line and field
    docs = []
    for job in jobs:
        doc = job.to_dict()
        doc["spec"] = absolutize(doc["spec"], path.resolve().parent)
        docs.append(doc)
    return docs


def _describe(job: Mapping[str, Any]) -> str:
    status = job.get("status") or {}
    loss = (status.get("metrics") or {}).get("loss")
    progress = status.get("progress") or {}
    parts = [status.get("phase", "Pending")]
    if progress.get("totalSteps"):
        parts.append(f"step {progress.get('step', 0)}/{progress['totalSteps']}")
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    return " ".join(parts)


def _watch(cluster: Any, names: list[str], timeout: float, quiet: bool) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    interactive = _err.is_terminal and not quiet
    progress = Progress(TextColumn("{task.fields[name]}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                        TextColumn("{task.description}"), TimeElapsedColumn(), console=_err, disable=not interactive)
    tasks: dict[str, TaskID] = {n: progress.add_task("Pending", total=100, name=n) for n in names}
    with progress:
        while True:
            jobs = [cluster.get(n) or {"metadata": {"name": n}} for n in names]
            for job in jobs:
                name, text = job["metadata"]["name"], _describe(job)
                percent = ((job.get("status") or {}).get("progress") or {}).get("percent") or 0
                progress.update(tasks[name], completed=percent, description=text)
                phase = (job.get("status") or {}).get("phase")
                if not interactive and not quiet and last.get(name) != phase and phase:
                    _err.print(f"{name}: {text}")
                last[name] = phase or ""
            if all((j.get("status") or {}).get("phase") in TERMINAL_PHASES for j in jobs):
                return jobs
            if time.monotonic() > deadline:
                _err.print(f"[yellow]timed out after {timeout:.0f}s[/yellow]")
                return jobs
            time.sleep(0.5)


def _local_artifacts(cluster: Any, name: str) -> list[str]:
    """Adapter directories this job's pods left in the local cluster work directory (for the summary)."""
    root = Path(cluster.workdir) / "pods" / cluster.namespace
    return sorted(str(p) for p in root.glob(f"{name}-trainer-*/volumes/work/output/final") if p.is_dir())


#: Where `local run` keeps each final AlignmentJob (and its events) for `alignctl get/describe WORKDIR`.
SAVED_JOBS = "jobs"


def save_jobs(workdir: Path, jobs: list[dict[str, Any]], events: Mapping[str, list[dict[str, Any]]]) -> Path:
    """The final objects as <workdir>/jobs/<name>.json: inspectable once the local cluster (and its API) is gone."""
    folder = workdir / SAVED_JOBS
    folder.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        name = job["metadata"]["name"]
        (folder / f"{name}.json").write_text(json.dumps({"object": job, "events": events.get(name, [])}, indent=2))
    return workdir


def load_saved_jobs(path: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(object, events) of each job a finished local run saved under `path` (a work directory, its jobs/ folder
    or one saved file)."""
    files = [path] if path.is_file() else sorted((path / SAVED_JOBS).glob("*.json")) or sorted(path.glob("*.json"))
    out = []
    for file in files:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("object"), dict):
            out.append((doc["object"], list(doc.get("events") or [])))
    return out


def _print_places(cluster: Any, names: list[str]) -> None:
    """Where each job's pods kept their working directory (checkpoints, metrics, final/) and log."""
    root = Path(cluster.workdir) / "pods" / cluster.namespace
    for name in names:
        for pod in sorted(root.glob(f"{name}-trainer-*")):
            _err.print(f"{name}: pod {pod.name}: output {pod / 'volumes' / 'work' / 'output'}, log {pod / 'log.txt'}",
                       highlight=False, soft_wrap=True)
    _err.print(f"inspect later: alignctl report/plot {root}/<pod>/volumes/work/output", highlight=False,
               soft_wrap=True)


@local_app.command("run")
def run(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="AlignmentJob manifest (one or more documents)."),
    output: str = typer.Option("yaml", "--output", "-o", help="Format of the final AlignmentJob(s): yaml or json."),
    workdir: Path = typer.Option(Path(".align-local"), help="Where pod volumes, logs and outputs are kept."),
    timeout: float = typer.Option(3600.0, help="Give up after this many seconds."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress, only the final object."),
    trainer_command: str = typer.Option(None, help="Replace the pods' command (testing), e.g. a fake trainer."),
    preflight: bool = typer.Option(True, "--preflight/--no-preflight",
                                   help="Check data, grader templates and outputs before starting (as validate --preflight)."),
) -> None:
    """Apply FILE to a local cluster, show progress, print the final AlignmentJob; exit 0 only if it Succeeded.
    Everything the run writes (pod volumes: checkpoints, caches, outputs; logs) stays under --workdir."""
    LocalCluster = local_package().LocalCluster

    if output not in ("yaml", "json"):
        raise typer.BadParameter("use -o yaml or -o json", param_hint="--output")
    try:
        docs = _documents(file)
    except ManifestError as exc:
        for error in exc.errors:
            _err.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    if preflight:
        from .validate_cmd import preflight_paths
        problems = preflight_paths([file])
        for line in problems:
            _err.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
        if problems:
            _err.print("nothing was started (skip these checks with --no-preflight)")
            raise typer.Exit(2)
    workdir = workdir.resolve()
    command = trainer_command.split() if trainer_command else None
    with LocalCluster(workdir, trainer_command=command, cwd=file.resolve().parent) as cluster:
        if not quiet:
            _err.print(f"local cluster: API {cluster.url} (KUBECONFIG={cluster.kubeconfig}), work dir {workdir}")
        for doc in docs:
            cluster.apply(doc)
        names = [doc["metadata"]["name"] for doc in docs]
        jobs = _watch(cluster, names, timeout, quiet)
        saved = save_jobs(workdir, jobs, {n: cluster.events(n) for n in names})
        if not quiet:
            _print_places(cluster, names)
            _err.print(f"after the local cluster stops: alignctl get {saved}, alignctl describe {saved}",
                       highlight=False, soft_wrap=True)
            for job in jobs:
                status = job.get("status") or {}
                if status.get("phase") == "Succeeded":
                    where = (status.get("artifacts") or {}).get("adapter") or \
                        ", ".join(_local_artifacts(cluster, job["metadata"]["name"])) or "(not reported)"
                    _err.print(f"[green]{job['metadata']['name']} Succeeded[/green]: adapter {where}")
                else:
                    error = status.get("lastError") or {}
                    _err.print(f"[red]{job['metadata']['name']} {status.get('phase')}[/red]: "
                               f"{error.get('reason', '')} {error.get('message', '')}".rstrip())
    final: Any = jobs[0] if len(jobs) == 1 else {"apiVersion": "v1", "kind": "List", "items": jobs}
    sys.stdout.write(json.dumps(final, indent=2) + "\n" if output == "json" else yaml.safe_dump(final, sort_keys=False))
    if not all((j.get("status") or {}).get("phase") == "Succeeded" for j in jobs):
        raise typer.Exit(1)


# --- a persistent local control plane: up / down / status ------------------------------------------------------

def _home_option() -> Any:
    return typer.Option(None, "--home", envvar="ALIGN_LOCAL_HOME", show_default=False,
                        help="State directory of the local plane (default ~/.align/local).")


@local_app.command("up")
def up(
    home: Path = _home_option(),
    real: bool = typer.Option(None, "--real/--emulator", show_default=False,
                              help="The real control plane (kube-apiserver 1.20 + controller-manager, from "
                                   "scripts/realk8s.sh build) or the emulated API server. Default: real when built "
                                   "and able to run pods, else the emulator."),
    cwd: Path = typer.Option(None, "--cwd", show_default=False,
                             help="Directory pods run in: relative data paths of manifests resolve here "
                                  "(default: the current directory)."),
    port: int = typer.Option(0, "--port", help="Emulator: API server port (0 = any free port)."),
    port_base: int = typer.Option(None, "--port-base", show_default=False,
                                  help="Real: REALK8S_PORT_BASE (API server on BASE+443; default 61000)."),
    timeout: float = typer.Option(120.0, help="Give up starting after this many seconds."),
) -> None:
    """Start a local control plane in the background (API server, the operator and its admission webhook as the
    chart installs them, node agent) and write a kubeconfig,
    so kubectl and alignctl work against it as against a cluster until `alignctl local down`."""
    localplane = local_package("localplane")

    mode = "auto" if real is None else ("real" if real else "emulator")
    try:
        state = localplane.up(home or localplane.default_home(), mode=mode, cwd=cwd, port=port,
                                 port_base=port_base, timeout=timeout)
    except localplane.PlaneError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    _err.print(f"local control plane up ({state.mode}): API {state.server}, pods run in {state.cwd}")
    _err.print("use it with:")
    sys.stdout.write(f"export KUBECONFIG={state.kubeconfig}\n")


@local_app.command("down")
def down(home: Path = _home_option()) -> None:
    """Stop the local control plane (node agent, operator, API server). Pod outputs stay in its work directory."""
    localplane = local_package("localplane")

    try:
        state = localplane.down(home or localplane.default_home())
    except localplane.PlaneError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    _err.print("local control plane stopped" if state else "no local control plane was running")


@local_app.command("status")
def status(
    home: Path = _home_option(),
    output: str = typer.Option("text", "--output", "-o", help="text or json."),
) -> None:
    """What runs: mode, API server, each background process with its PID; exit 1 if not (fully) running."""
    localplane = local_package("localplane")

    report = localplane.status(home or localplane.default_home())
    if output == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    elif not report.get("mode"):
        sys.stdout.write(f"no local control plane (home {report['home']})\n")
    else:
        lines = [f"mode:       {report['mode']}",
                 f"api:        {report['server']} ({'answering' if report['api'] else 'NOT answering'})",
                 f"kubeconfig: {report['kubeconfig']}", f"pods run in {report['cwd']}; outputs in {report['workdir']}"]
        for role, proc in report["processes"].items():
            lines.append(f"{role + ':':<11} {'running' if proc['running'] else 'STOPPED'} (pid {proc['pid']})")
        if report["mode"] == "emulator":
            lines.append("node agent: in the plane process (emulator)")
        if report.get("webhook"):
            lines.append(f"webhook:    {report['webhook']} (validates AlignmentJobs at kubectl apply, as the chart's)")
        if report.get("control plane"):
            lines.append(report["control plane"])
        sys.stdout.write("\n".join(lines) + "\n")
    if not (report["running"] and report.get("api")):
        raise typer.Exit(1)
