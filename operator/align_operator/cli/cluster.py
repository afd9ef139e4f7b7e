"""What every cluster-facing alignctl command shares: connection options, the client, errors, formatting."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from align_operator.client import AlignClient, ClusterError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exit codes of alignctl (also in docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1        # the job failed, or the command did (API error, not found, invalid manifest)
EXIT_USAGE = 2         # click's code for bad arguments
EXIT_TIMEOUT = 124     # `wait` gave up before the job finished (as GNU timeout)

Kubeconfig = Annotated[Path | None, typer.Option(
    "--kubeconfig", help="Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).",
    show_default=False, rich_help_panel="Cluster")]
Context = Annotated[str | None, typer.Option(
    "--context", help="kubeconfig context to use (default: the current context).", show_default=False,
    rich_help_panel="Cluster")]
Namespace = Annotated[str | None, typer.Option(
    "--namespace", "-n", help="Namespace (default: the context's namespace, else 'default').", show_default=False,
    rich_help_panel="Cluster")]
Server = Annotated[str | None, typer.Option(
    "--server", help="API server URL, bypassing the kubeconfig (e.g. the local cluster's).", show_default=False,
    envvar="ALIGNCTL_SERVER", rich_help_panel="Cluster")]


def make_client(kubeconfig: Path | None, context: str | None, namespace: str | None,
                server: str | None = None) -> AlignClient:
    """The client for the chosen cluster; exits with a readable message when it cannot be configured."""
    try:
        return AlignClient(kubeconfig=kubeconfig, context=context, namespace=namespace, host=server)
    except ClusterError as exc:
        fail(str(exc))
    except ModuleNotFoundError as exc:
        fail(f"{exc.name} is not installed; cluster commands need: pip install 'align-operator[cli]'")
    raise AssertionError("unreachable")


def fail(message: str, code: int = EXIT_FAILED) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@contextlib.contextmanager
def cluster_errors() -> Iterator[None]:
    """Turn API errors into one line on stderr and exit code 1 (no traceback for an expected failure)."""
    try:
        yield
    except ClusterError as exc:
        fail(str(exc))


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def human_duration(seconds: float | None) -> str:
    """kubectl's short durations: 42s, 5m, 3h, 2d (two units below a day, as kubectl does)."""
    if seconds is None:
        return "<unknown>"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h{minutes % 60}m" if hours < 8 and minutes % 60 else f"{hours}h"
    return f"{hours // 24}d"


def age(timestamp: Any, now: datetime | None = None) -> str:
    when = parse_time(timestamp)
    if when is None:
        return "<unknown>"
    return human_duration(((now or datetime.now(timezone.utc)) - when).total_seconds())


def is_tty() -> bool:
    return sys.stderr.isatty()
