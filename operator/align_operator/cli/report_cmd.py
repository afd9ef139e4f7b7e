"""alignctl report JOB|DIR: show a job's evaluation (numbers, gates) and fetch/open its report.md and charts.

DIR is a local output directory (`python -m align_trainer --output DIR`, `alignctl local run`): it holds
evaluation.json, report.md and the PNGs. JOB is an AlignmentJob in the cluster: its status.evaluation is
shown, and the report is copied from status.artifacts.report (or `<spec.output.uri>/evaluation/`) into
`--output` (default ./<job>-report/).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from . import app
from .cluster import Context, Kubeconfig, Namespace, Server

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.md"
#: Where the trainer uploads the evaluation next to the adapter (see docs/evaluation.md).
REMOTE_SUBDIR = "evaluation"

_out = Console()
_err = Console(stderr=True)


class ReportError(Exception):
    """The report cannot be found or fetched; the message says what to do."""


# --------------------------------------------------------------------------- local directories
def find_evaluation(path: Path) -> Path | None:
    """The evaluation.json for a path: the file itself, DIR/evaluation.json or DIR/evaluation/evaluation.json."""
    if path.is_file():
        return path
    for candidate in (path / EVALUATION_FILE, path / REMOTE_SUBDIR / EVALUATION_FILE):
        if candidate.is_file():
            return candidate
    return None


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_table(status: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in status.items():
        table.add_row(key, _fmt(value))
    return table


def show(doc: dict[str, Any], where: Path, console: Console = _out) -> None:
    kind = "reward model on held-out pairs" if doc.get("kind") == "reward_model" else "policy vs reference"
    console.print(summary_table(doc.get("status", {}), f"Evaluation: {kind}"))
    for gate in doc.get("gates", []):
        mark = "[green]PASS[/green]" if gate["passed"] else "[red]FAIL[/red]"
        console.print(f"{mark} {gate['message']}", highlight=False, soft_wrap=True)
    details = doc.get("details", {})
    if details.get("lengthBiasFlag"):
        console.print("[yellow]length bias:[/yellow] " + "; ".join(details.get("lengthBiasReasons", [])), highlight=False,
                      soft_wrap=True)
    report = where / doc.get("report", REPORT_FILE)
    if report.exists():
        console.print(f"report: {report}", highlight=False, soft_wrap=True)  # paths stay copyable: no wrapping
    for chart in doc.get("charts", []):
        console.print(f"chart:  {where / chart}", highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- jobs in a cluster
def report_uri(job: dict[str, Any]) -> str | None:
    """Where a job's report lives: status.artifacts.report, else <spec.output.uri>/evaluation/report.md."""
    artifacts = (job.get("status") or {}).get("artifacts") or {}
    if artifacts.get("report"):
        return str(artifacts["report"])
    output = ((job.get("spec") or {}).get("output") or {}).get("uri")
    return f"{str(output).rstrip('/')}/{REMOTE_SUBDIR}/{REPORT_FILE}" if output else None


def fetch(uri: str, dest: Path) -> Path:
    """Copy the report's directory (report.md, evaluation.json, *.png) from `uri` into `dest`."""
    folder = uri.rsplit("/", 1)[0] if uri.endswith(".md") else uri.rstrip("/")
    dest.mkdir(parents=True, exist_ok=True)
    if folder.startswith("s3://"):
        return _fetch_s3(folder, dest)
    if folder.startswith("pvc://"):
        claim = folder[len("pvc://"):].split("/", 1)[0]
        raise ReportError(f"the report is on the PersistentVolumeClaim {claim!r}, which this machine cannot read; "
                          f"copy it from a pod that mounts the claim (kubectl cp), then run `alignctl report DIR`")
    local = Path(folder[len("file://"):] if folder.startswith("file://") else folder)
    if not local.is_dir():
        raise ReportError(f"{local} does not exist on this machine")
    for path in local.iterdir():
        if path.is_file() and (path.suffix == ".png" or path.name in (EVALUATION_FILE, REPORT_FILE)):
            shutil.copy2(path, dest / path.name)
    return dest


def _fetch_s3(folder: str, dest: Path) -> Path:
    import boto3  # the trainer extra; only needed for s3:// outputs
    bucket, _, prefix = folder[len("s3://"):].partition("/")
    s3 = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
    keys = [o["Key"] for o in listing.get("Contents", []) if o["Key"].rsplit("/", 1)[-1] in (EVALUATION_FILE, REPORT_FILE)
            or o["Key"].endswith(".png")]
    if not keys:
        raise ReportError(f"no report under {folder}")
    for key in keys:
        s3.download_file(bucket, key, str(dest / key.rsplit("/", 1)[-1]))
    return dest


def load_job(name: str, namespace: str | None, kubeconfig: Path | None, context: str | None,
             server: str | None = None) -> dict[str, Any]:
    """GET the AlignmentJob through the same client as every other cluster command."""
    from align_operator.client import ClusterError

    from .cluster import make_client
    client = make_client(kubeconfig, context, namespace, server)
    try:
        return client.get(name)
    except ClusterError as exc:
        raise ReportError(str(exc)) from None


def report_for_job(job: dict[str, Any], dest: Path) -> tuple[dict[str, Any], Path | None]:
    """(evaluation document, local directory of the fetched report or None when it cannot be fetched)."""
    status = job.get("status") or {}
    uri = report_uri(job)
    fetched: Path | None = None
    problem = ""
    if uri:
        try:
            fetched = fetch(uri, dest)
        except ReportError as exc:
            problem = str(exc)
    found = find_evaluation(fetched) if fetched else None
    if found:
        return json.loads(found.read_text()), fetched
    if not status.get("evaluation"):
        raise ReportError(f"AlignmentJob {job.get('metadata', {}).get('name')!r} has no evaluation yet "
                          f"(phase {status.get('phase', 'unknown')})" + (f"; {problem}" if problem else ""))
    if problem:
        _err.print(f"[yellow]warning[/yellow] {problem}", highlight=False)
    return {"kind": "policy", "status": status["evaluation"], "gates": []}, None


@app.command("report")
def report(
    target: str = typer.Argument(..., help="An output directory (or evaluation.json), or an AlignmentJob name."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Where to put a fetched report (default ./<job>-report)."),
    open_report: bool = typer.Option(False, "--open", help="Open report.md with the system's default application."),
    as_json: bool = typer.Option(False, "--json", help="Print the status numbers and gates as JSON."),
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    server: Server = None,
) -> None:
    """Show an evaluation (win rate, reward delta, gates, ...) and where its report.md and charts are."""
    try:
        local = Path(target)
        if local.exists():
            found = find_evaluation(local)
            if found is None:
                raise ReportError(f"no {EVALUATION_FILE} in {local} (did the job run an evaluation?)")
            doc, where = json.loads(found.read_text()), found.parent
        else:
            job = load_job(target, namespace, kubeconfig, context, server)
            doc, where = report_for_job(job, output or Path(f"{target}-report"))
    except ReportError as exc:
        _err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps({"status": doc.get("status"), "passed": doc.get("passed"), "gates": doc.get("gates", [])},
                              indent=2))
    else:
        show(doc, where or Path("."))
    if open_report and where is not None and (where / REPORT_FILE).exists():
        typer.launch(str(where / REPORT_FILE))
