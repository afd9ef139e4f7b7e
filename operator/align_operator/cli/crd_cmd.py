"""alignctl crd: print the generated CustomResourceDefinition (pipe it to kubectl apply -f -)."""

from __future__ import annotations

import typer

from align_api import crd

from . import app


@app.command("crd")
def crd_command(check: bool = typer.Option(False, help="Exit 1 if the committed copies differ from the code.")) -> None:
    """Print the AlignmentJob CRD generated from the spec models."""
    raise typer.Exit(crd.main(["--check"] if check else []))
