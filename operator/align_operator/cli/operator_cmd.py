"""alignctl operator: run the operator in the foreground (what the chart's Deployment runs)."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app


@app.command("operator")
def operator(
    namespace: list[str] = typer.Option([], "--namespace", "-n", help="Serve only these namespaces (repeatable)."),
    kubeconfig: Path = typer.Option(None, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)."),
    liveness: str = typer.Option(None, help="Liveness endpoint, e.g. http://0.0.0.0:8081/healthz."),
    peering: bool = typer.Option(False, help="Kopf peering for several replicas (default: standalone)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the align-operator until SIGTERM/SIGINT. Settings come from ALIGN_OPERATOR_* environment variables."""
    from align_operator.runner import run
    from align_operator.settings import Settings

    run(Settings.from_env(), kubeconfig=str(kubeconfig) if kubeconfig else None, namespaces=namespace,
        standalone=not peering, liveness=liveness, verbose=verbose)
