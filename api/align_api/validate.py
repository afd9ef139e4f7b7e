"""Offline validation of AlignmentJob manifests with errors that name the file, line and field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import ValidationError

from .graders import GRADER_TYPES
from .spec import AlignmentJob


_SUBPATH = re.compile(r"^\[([A-Za-z][\w.\[\]]*)\] (.*)$", re.S)


@dataclass(frozen=True)
class SpecError:
    """One problem in one manifest."""

    path: str
    message: str
    file: str = "<input>"
    line: int | None = None
    document: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.document:
            where += f" (document {self.document + 1})"
        return f"{where}: {self.path}: {self.message}"


class ManifestError(ValueError):
    """Raised when a manifest is invalid; carries every SpecError."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _line_map(node: yaml.Node, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], int]]:
    yield prefix, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield (*prefix, key.value), key.start_mark.line + 1
            yield from ((p, line) for p, line in _line_map(value, (*prefix, key.value)) if p != (*prefix, key.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _line_map(item, (*prefix, index))


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    out = []
    for part in loc:
        if isinstance(part, str) and (part in GRADER_TYPES or part.startswith(("function-", "tagged-union["))):
            continue
        out.append(part)
    return tuple(out)


def format_path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<document>"


def errors_from_validation(exc: ValidationError, lines: dict[tuple[Any, ...], int] | None = None,
                           file: str = "<input>", document: int = 0) -> list[SpecError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]))
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        sub = _SUBPATH.match(message)
        if sub:
            loc = loc + tuple(int(x) if x.isdigit() else x for x in re.findall(r"[^.\[\]]+", sub.group(1)))
            message = sub.group(2)
        if err["type"] == "extra_forbidden":
            message = "unknown field (not part of the AlignmentJob schema; check its spelling and indentation)" \
                + did_you_mean(str(loc[-1]) if loc else "")
        elif isinstance(err.get("input"), (str, int, float, bool)) and err["type"] not in ("missing",) \
                and "\n" not in str(err["input"]) and repr(err["input"]) not in message:
            shown = repr(err["input"])
            message = f"{message}; got {shown if len(shown) < 80 else shown[:77] + '...'}"
        elif err["type"] == "union_tag_invalid":
            message = f"unknown grader type {err['input'].get('type') if isinstance(err['input'], dict) else err['input']!r}; allowed: {', '.join(GRADER_TYPES)}"
        elif err["type"] == "union_tag_not_found":
            message = f"grader needs a 'type' ({', '.join(GRADER_TYPES)})"
        line = None
        if lines:
            probe = loc
            while probe and probe not in lines:
                probe = probe[:-1]
            line = lines.get(probe)
        errors.append(SpecError(format_path(loc), message, file, line, document))
    return errors


def _field_names(model: Any, seen: set[Any] | None = None) -> set[str]:
    """Every key (alias) of the AlignmentJob schema, nested models included."""
    from typing import get_args

    from pydantic import BaseModel
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        stack = [field.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                names |= _field_names(kind, seen)
            stack.extend(get_args(kind))
    return names


def did_you_mean(key: str) -> str:
    """"; did you mean 'learningRate'?" for a misspelt key, else ""."""
    from difflib import get_close_matches
    close = get_close_matches(key, sorted(_field_names(AlignmentJob)), n=1, cutoff=0.75) if key else []
    return f"; did you mean {close[0]!r}?" if close else ""


def validate_document(doc: Any, *, file: str = "<input>", document: int = 0,
                      lines: dict[tuple[Any, ...], int] | None = None) -> AlignmentJob:
    if not isinstance(doc, dict):
        raise ManifestError([SpecError("<document>", "a manifest must be a YAML mapping", file, 1, document)])
    try:
        return AlignmentJob.model_validate(doc)
    except ValidationError as exc:
        raise ManifestError(errors_from_validation(exc, lines, file, document)) from None


def load_text(text: str, file: str = "<input>") -> list[AlignmentJob]:
    """Parse and validate every document; raise ManifestError with all problems of all documents."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ManifestError([SpecError("<document>", f"invalid YAML: {getattr(exc, 'problem', exc)}", file,
                                       mark.line + 1 if mark else None)]) from None
    jobs, errors = [], []
    index = 0
    for node, doc in zip(nodes, docs):
        if doc is None:
            continue
        lines = dict(_line_map(node))
        try:
            jobs.append(validate_document(doc, file=file, document=index, lines=lines))
        except ManifestError as exc:
            errors.extend(exc.errors)
        index += 1
    if errors:
        raise ManifestError(errors)
    if not jobs:
        raise ManifestError([SpecError("<document>", "no AlignmentJob found in the file", file)])
    return jobs


def load_file(path: str | Path) -> list[AlignmentJob]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError([SpecError("<file>", f"cannot read: {exc.strerror}", str(path))]) from None
    return load_text(text, str(path))
