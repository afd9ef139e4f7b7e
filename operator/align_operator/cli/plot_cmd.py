"""alignctl plot JOB|DIR: training curves from metrics.jsonl as a PNG plus a sparkline summary."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from align_operator.cli import app
from align_operator.cli.job_views import format_table
from align_operator.cli.cluster import (Context, Kubeconfig, Namespace, Server, cluster_errors, console,
                                        err_console, fail, make_client)
from align_operator.client import phase_of
from align_operator.metrics_plot import read_metrics, render_png, summary

METRICS_FILE = "metrics.jsonl"


def _local_metrics(path: Path) -> Path:
    """metrics.jsonl itself, the one in a run directory, or the only one below a folder (several runs below it
    are ambiguous: they are listed, none is picked). Runs moved to superseded/ do not count."""
    if path.is_file():
        return path
    direct = path / METRICS_FILE
    if direct.is_file():
        return direct
    found = sorted(p for p in path.rglob(METRICS_FILE) if "superseded" not in p.relative_to(path).parts)
    if not found:
        fail(f"no {METRICS_FILE} in {path}")
    if len(found) > 1:
        listing = "\n  ".join(f"{p.parent}  ({_run_title(p.parent)})" for p in found)
        fail(f"{path} holds {len(found)} runs; plot one of them:\n  {listing}")
    return found[0]


def _fetch(uri: str, job: str) -> Path:
    """A local copy of the job's metrics artifact (file:// and s3:// are readable from here)."""
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if uri.startswith("/"):
        return Path(uri)
    if uri.startswith("s3://"):
        try:
            import boto3
        except ImportError:
            fail(f"{uri} needs boto3 (pip install 'align-operator[trainer]') or a local copy: alignctl plot DIR")
        bucket, _, key = uri[len("s3://"):].partition("/")
        target = Path(tempfile.mkdtemp(prefix=f"alignctl-{job}-")) / METRICS_FILE
        boto3.client("s3").download_file(bucket, key, str(target))
        return target
    fail(f"cannot read {uri} from here; copy it out of the volume (kubectl cp) and run: alignctl plot DIR")
    raise AssertionError  # unreachable


def _run_title(run_dir: Path) -> str:
    """The job's name from the trainer's status.json in a run directory, else the directory's name."""
    try:
        job = json.loads((run_dir / "status.json").read_text()).get("job")
    except (OSError, ValueError, AttributeError):
        job = None
    return str(job) if job else run_dir.resolve().name


@app.command(rich_help_panel="Results")
def plot(
    target: Annotated[str, typer.Argument(metavar="JOB|DIR", help="A job name, a run directory or a metrics.jsonl.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG path (default: DIR/metrics.png, "
                                                                     "or ./JOB-metrics.png for a job).")] = None,
    png: Annotated[bool, typer.Option("--png/--no-png", help="Write the image (else only the summary).")] = True,
    width: Annotated[int, typer.Option(help="Sparkline width in characters.")] = 32,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Plot loss, reward margins/accuracies, KL, learning rate and tokens/s over steps."""
    local = Path(target)
    if local.exists():
        metrics_path = _local_metrics(local)
        title = _run_title(metrics_path.parent)
        default_png = metrics_path.parent / "metrics.png"
    else:
        client = make_client(kubeconfig, context, namespace, server)
        with cluster_errors():
            obj = client.get(target)
        uri = ((obj.get("status") or {}).get("artifacts") or {}).get("metrics")
        if not uri:
            fail(f'alignmentjob "{target}" has no metrics artifact yet (phase {phase_of(obj)})')
        metrics_path = _fetch(str(uri), target)
        title = f"{target} ({(obj.get('spec') or {}).get('algorithm')})"
        default_png = Path(f"{target}-metrics.png")
    metrics = read_metrics(metrics_path)
    if metrics.skipped_lines:
        err_console.print(f"[yellow]warning:[/yellow] skipped {metrics.skipped_lines} unreadable line(s) in {metrics_path}")
    rows = summary(metrics.records, width)
    if not rows:
        fail(f"{metrics_path}: no plottable metrics ({len(metrics.records)} records)")
    typer.echo(format_table(["METRIC", "POINTS", "FIRST", "LAST", "MIN", "MAX", "TREND"], rows))
    if png:
        try:
            written = render_png(metrics.records, output or default_png, title=title)
        except ModuleNotFoundError as exc:
            fail(f"{exc.name} is not installed; the PNG needs: pip install 'align-operator[cli]' (or use --no-png)")
        console.print(f"wrote {written} ({title})")
