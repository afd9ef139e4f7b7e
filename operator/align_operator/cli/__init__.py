"""alignctl: the user's tool. Each command group lives in its own module and registers itself on `app`."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(name="alignctl", help="Align models on Kubernetes: validate, submit, watch and debug AlignmentJobs.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

#: Command modules (each calls `@app.command` / `app.add_typer` on import). Missing ones are skipped so
#: that a partial install (e.g. without the trainer extra) still offers the rest.
COMMAND_MODULES = (
    "validate_cmd",   # alignctl validate
    "jobs_cmd",       # submit, get, list, describe, logs, wait, suspend, resume, cancel
    "lifecycle_cmd",  # events, checkpoints
    "local_cmd",      # alignctl local run
    "operator_cmd",   # alignctl operator
    "grade_cmd",      # alignctl grade
    "plot_cmd",       # alignctl plot
    "import_cmd",     # alignctl import openai
    "report_cmd",     # alignctl report
    "crd_cmd",        # alignctl crd (print/write the generated CRD)
    "console_cmd",    # alignctl console (read-only web console)
)


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"{__name__}.{name}"):
                continue  # module not written yet
            raise


def main() -> None:
    _register()
    app()
