"""alignctl grade: run a grader over test cases locally, like OpenAI's grader run endpoint.

    alignctl grade --grader grader.json --input cases.jsonl

GRADER is a grader definition (JSON or YAML, OpenAI's format) or an AlignmentJob manifest (its
spec.grader is used). Each input line is {"item": {...}, "model_sample": "answer text"}. One JSON line per
case goes to stdout: {"reward", "sub_rewards", "errors", "metadata"}; a summary goes to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
import yaml

from . import app


class CaseError(ValueError):
    pass


def load_grader(path: Path) -> Any:
    """A grader spec from a grader file or from an AlignmentJob manifest's spec.grader."""
    from pydantic import TypeAdapter, ValidationError

    from align_api.graders import Grader
    from align_api import yamlio
    from align_api.validate import ManifestError, errors_from_validation, load_file

    try:
        doc = yamlio.load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CaseError(f"{path}: cannot read grader: {exc}") from None
    if isinstance(doc, dict) and doc.get("kind") == "AlignmentJob":
        try:
            job = load_file(path)[0]
        except ManifestError as exc:
            raise CaseError(str(exc)) from None
        if job.spec.grader is None:
            raise CaseError(f"{path}: the manifest has no spec.grader")
        return job.spec.grader
    try:
        return TypeAdapter(Grader).validate_python(doc)
    except ValidationError as exc:
        raise CaseError("\n".join(f"{path}: {e.path}: {e.message}" for e in errors_from_validation(exc, file=str(path)))) from None


def load_cases(path: Path) -> list[tuple[dict[str, Any], str]]:
    cases = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CaseError(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise CaseError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(row, dict) or not isinstance(row.get("model_sample"), str):
            raise CaseError(f"{path}:{number}: model_sample: each line needs a string model_sample "
                            '(e.g. {"item": {"answer": "4"}, "model_sample": "4"})')
        item = row.get("item", {})
        if not isinstance(item, dict):
            raise CaseError(f"{path}:{number}: item: must be an object")
        cases.append((item, row["model_sample"]))
    return cases


def grade_cases(spec: Any, cases: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
    """One OpenAI-shaped result per case, with the set error flags also at the top level as `errors`."""
    from align_trainer import graders

    grader = graders.build(spec)
    try:
        results = grader.grade_batch([c[0] for c in cases], [c[1] for c in cases]) if cases else []
    finally:
        grader.close()
    out = []
    for result in results:
        row = result.to_dict()
        # only the flags that are set (OpenAI lists all of them, mostly false: noise when reading a failure)
        row["metadata"]["errors"] = row["errors"] = {k: v for k, v in row["metadata"]["errors"].items() if v}
        out.append(row)
    return out


@app.command()
def grade(
    grader_file: Path = typer.Option(..., "--grader", "-g", help="Grader JSON/YAML (OpenAI format) or an AlignmentJob manifest."),
    input_file: Path = typer.Option(..., "--input", "-i", help='JSONL cases: {"item": {...}, "model_sample": "..."} per line.'),
    allow_errors: bool = typer.Option(False, "--allow-errors", help="Exit 0 even when some cases errored."),
) -> None:
    """Run a grader over test cases and print one JSON result per line (reward, sub_rewards, errors);
    exit 1 when any case errored (a grader that errors scores 0 in training), unless --allow-errors."""
    try:
        spec = load_grader(grader_file)
        cases = load_cases(input_file)
    except CaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        from align_trainer import graders  # noqa: F401  (the trainer extra is needed to run graders)
    except ImportError as exc:
        typer.echo(f"error: running graders needs the trainer extra (pip install 'align-operator[trainer]'): {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        rows = grade_cases(spec, cases)
    except ValueError as exc:  # GraderUnavailable: missing data/model/endpoint
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for row in rows:
        sys.stdout.write(json.dumps(row) + "\n")
    failed = sum(1 for row in rows if row["errors"])
    mean = sum(row["reward"] for row in rows) / len(rows) if rows else 0.0
    typer.echo(f"{len(rows)} cases, mean reward {mean:.4g}, {failed} with errors", err=True)
    if failed and not allow_errors:
        typer.echo(f"error: {failed} of {len(rows)} case(s) errored (see their errors); --allow-errors to accept",
                   err=True)
        raise typer.Exit(1)
