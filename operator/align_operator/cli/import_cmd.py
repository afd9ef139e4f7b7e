"""alignctl import openai JOB.json: an OpenAI fine-tuning job request becomes an AlignmentJob manifest."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from align_api import Algorithm, ManifestError, load_text
from align_operator.cli import app
from align_operator.cli.cluster import EXIT_FAILED, err_console
from align_operator.openai_import import RL_ALGORITHMS, Note, Options, RequestError, convert

import_app = typer.Typer(name="import", help="Convert another platform's job definition into an AlignmentJob.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import", rich_help_panel="Migrate")

_STYLE = {"mapped": "green", "default": "cyan", "approx": "yellow", "dropped": "red"}


def print_notes(notes: list[Note]) -> None:
    """One line per OpenAI field on stderr: what happened to it."""
    for note in notes:
        err_console.print(f"[{_STYLE[note.kind]}]{note.kind:>7}[/]  {note.field}: {note.message}", markup=True,
                          highlight=False)


def render(manifest: dict, notes: list[Note], source: str) -> str:
    """The manifest as YAML, headed by the notes a reviewer should read before applying it."""
    review = [f"#   {n.kind}: {n.field}: {n.message}" for n in notes if n.kind in ("approx", "dropped")]
    header = [f"# Imported from {source} by `alignctl import openai` (see docs/migrate-from-openai.md)."]
    header += ["# Review before applying:", *review] if review else ["# Every OpenAI field mapped directly."]
    return "\n".join(header) + "\n" + yaml.safe_dump(manifest, sort_keys=False, width=110)


@import_app.command("openai")
def import_openai(
    request_file: Annotated[str, typer.Argument(metavar="JOB.json", help="OpenAI fine-tuning job request (JSON), or -.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the manifest here (default: stdout).")] = None,
    name: Annotated[str | None, typer.Option(help="metadata.name (default: from suffix or the file name).")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", help="metadata.namespace.")] = None,
    model: Annotated[str | None, typer.Option(help="Open model to train instead of the OpenAI one "
                                                   "(hub id, builtin://tiny, s3://, pvc://).")] = None,
    files_dir: Annotated[Path | None, typer.Option(help="Folder holding downloaded OpenAI files as <file-id>.jsonl.")] = None,
    data_prefix: Annotated[str | None, typer.Option(help="Point data at <prefix>/<file name>, e.g. s3://bucket/data.")] = None,
    rl_algorithm: Annotated[str, typer.Option(help="Algorithm for method 'reinforcement': "
                                                   + ", ".join(a.value for a in RL_ALGORITHMS) + ".")] = "grpo",
    strict: Annotated[bool, typer.Option(help="Exit 1 when any OpenAI field had to be dropped.")] = False,
) -> None:
    """Convert an OpenAI fine-tuning job request (supervised, dpo or reinforcement) into an AlignmentJob.

    Every field is reported on stderr (mapped / default / approx / dropped); the manifest is validated.
    """
    if rl_algorithm not in {a.value for a in RL_ALGORITHMS}:
        err_console.print(f"[red]error:[/red] --rl-algorithm must be one of {', '.join(a.value for a in RL_ALGORITHMS)}")
        raise typer.Exit(EXIT_FAILED)
    source = "<stdin>" if request_file == "-" else request_file
    try:
        text = sys.stdin.read() if request_file == "-" else Path(request_file).read_text(encoding="utf-8")
        request = json.loads(text)
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]error:[/red] cannot read {source}: {exc}")
        raise typer.Exit(EXIT_FAILED)
    base_dir = Path.cwd() if request_file == "-" else Path(request_file).resolve().parent
    opts = Options(name=name, model=model, files_dir=files_dir, base_dir=base_dir, data_prefix=data_prefix,
                   rl_algorithm=Algorithm(rl_algorithm), source=Path(source).name)
    try:
        manifest, notes = convert(request, opts)
    except RequestError as exc:
        err_console.print(f"[red]error:[/red] {source}: {exc}")
        raise typer.Exit(EXIT_FAILED)
    if namespace:
        manifest["metadata"]["namespace"] = namespace
    print_notes(notes)
    text = render(manifest, notes, Path(source).name)
    problems = import_problems(text, source)  # what `alignctl validate` would say: never write what it rejects
    for problem in problems:
        err_console.print(f"[red]error:[/red] {problem}", highlight=False)
    dropped = [n for n in notes if n.kind == "dropped"]
    if strict and dropped:
        err_console.print(f"[red]error:[/red] --strict: {len(dropped)} field(s) dropped; nothing written")
    if problems or (strict and dropped):
        raise typer.Exit(EXIT_FAILED)
    if output:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}: alignctl validate --preflight {output} && alignctl submit {output}")
    else:
        typer.echo(text, nl=False)


def import_problems(text: str, source: str) -> list[str]:
    """The schema's verdict on the YAML as kubectl will read it (not just the dict we meant to write), and the
    checks `alignctl validate` adds (e.g. graders this install cannot run)."""
    from align_operator.cli.validate_cmd import _extra_checks
    try:
        jobs = load_text(text, file=source)
    except ManifestError as exc:
        return [f"{error.path}: {error.message}" for error in exc.errors]
    return _extra_checks(Path(source), jobs)
