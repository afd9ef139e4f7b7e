"""alignctl validate: offline validation with the same rules the CRD and the operator enforce."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from align_api.validate import ManifestError, load_file

from . import app

_err = Console(stderr=True)
_out = Console()


def validate_paths(paths: list[Path]) -> tuple[int, list[str]]:
    """Validate every file; return (number of valid jobs, error lines)."""
    valid, problems = 0, []
    for path in paths:
        try:
            jobs = load_file(path)
        except ManifestError as exc:
            problems.extend(str(e) for e in exc.errors)
            continue
        problems.extend(_extra_checks(path, jobs))
        valid += len(jobs)
    return valid, problems


def _extra_checks(path: Path, jobs: list) -> list[str]:
    """Checks that need the trainer's runtime (e.g. grader metrics that need local data), when installed."""
    try:
        from align_trainer.graders import check_available  # type: ignore[attr-defined]
    except ImportError:
        return []
    problems = []
    for job in jobs:
        for where, grader in (("spec.grader", job.spec.grader),
                              ("spec.evaluation.grader", job.spec.evaluation.grader if job.spec.evaluation else None)):
            if grader is None:
                continue
            try:
                check_available(grader)
            except ValueError as exc:
                problems.append(f"{path}: {where}: {exc}")
    return problems


def preflight_paths(paths: list[Path]) -> list[str]:
    """The trainer's preflight on this machine (data files, grader templates against the first rows, file://
    outputs, judge endpoints, batch sizes), before anything runs: one line per problem naming file:line and field.
    Needs the trainer package (alignctl's `trainer` extra); without it, says so."""
    try:
        from align_trainer import preflight
    except ImportError:
        return ["--preflight needs the trainer package (pip install 'align-operator[trainer]')"]
    problems = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        for index, job in enumerate(load_file(path)):
            found = preflight.check(job, base_dir=path.resolve().parent, output_dir=None, in_pod=False)
            lines = preflight.manifest_lines(text, index)
            problems.extend(p.render(path, lines) for p in found)
    return problems


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="AlignmentJob manifests (multi-document YAML allowed)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
    preflight: bool = typer.Option(False, "--preflight", help="Also run the trainer's preflight here: data files "
                                   "exist and parse, grader templates match the rows, outputs are writable."),
) -> None:
    """Validate AlignmentJob manifests offline; exit 1 on any error."""
    valid, problems = validate_paths(files)
    if preflight and not problems:
        problems = preflight_paths(files)
    for line in problems:
        _err.print(f"[red]error:[/red] {line}", highlight=False, soft_wrap=True)
    if problems:
        _err.print(f"{len(problems)} error(s) in {len(files)} file(s)")
        raise typer.Exit(1)
    if not quiet:
        _out.print(f"[green]ok[/green] {valid} AlignmentJob(s) in {len(files)} file(s) are valid")
