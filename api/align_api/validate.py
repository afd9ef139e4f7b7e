"""Validation of AlignmentJob manifests as the API server receives them, with errors naming file, line and field.

The wire is strict, as on a cluster: YAML is read as kubectl reads it (align_api.yamlio), the document is the
JSON kubectl would send, and the model validates it in pydantic's strict JSON mode with camelCase names only.
So `batchSize: "8"` (a string to Kubernetes) and `learning_rate:` (unknown to the CRD) are errors here as
they are there, and `learningRate: 1e-5` is a float everywhere. `validate_document` is the one entry point of
alignctl, the operator and its admission webhook; Python code building models directly stays lenient.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import ValidationError

from . import yamlio
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


#: Pydantic's JSON-mode wording where a YAML author needs other words.
_MESSAGES = {"list_type": "Input should be a list (a YAML sequence)",
             "dict_type": "Input should be a mapping (a YAML object)",
             "model_type": "Input should be a mapping (a YAML object)"}
_SCALAR_TYPES = {"int_type", "float_type", "bool_type", "int_parsing", "float_parsing", "bool_parsing"}


def errors_from_validation(exc: ValidationError, lines: dict[tuple[Any, ...], int] | None = None,
                           file: str = "<input>", document: int = 0) -> list[SpecError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]))
        message = _MESSAGES.get(err["type"], err["msg"])
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        sub = _SUBPATH.match(message)
        if sub:
            loc = loc + tuple(int(x) if x.isdigit() else x for x in re.findall(r"[^.\[\]]+", sub.group(1)))
            message = sub.group(2)
        if err["type"] == "extra_forbidden":
            message = "unknown field (not part of the AlignmentJob schema; check its spelling and indentation)"
            suggestion = did_you_mean(loc)
            if suggestion:
                camel = suggestion == _camel(str(loc[-1]))
                message = f"unknown field; did you mean {suggestion}?" + (" (field names are camelCase)" if camel else "")
        elif err["type"] in _SCALAR_TYPES and isinstance(err.get("input"), str):
            message = (f"{message}; got the string {err['input']!r} (quoted in YAML: Kubernetes does not convert "
                       "strings to numbers or booleans)")
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


@functools.lru_cache(maxsize=1)
def _root_schema() -> dict[str, Any]:
    from .crd import spec_schema  # the CRD's schema is what the API server prunes and checks against

    return {"properties": {"apiVersion": {}, "kind": {}, "metadata": {}, "spec": spec_schema(), "status": {}}}


def _camel(name: str) -> str:
    return re.sub(r"[_-]([a-z0-9])", lambda m: m.group(1).upper(), name)


def did_you_mean(loc: tuple[Any, ...]) -> str | None:
    """The declared field closest to an unknown one at `loc` (learning_rate -> learningRate), if any is close."""
    node: dict[str, Any] | None = _root_schema()
    for part in loc[:-1]:
        if node is None:
            return None
        if isinstance(part, int):
            node = node.get("items")
        else:
            node = (node.get("properties") or {}).get(part) or node.get("additionalProperties") or None
    names = list((node or {}).get("properties") or {})
    wrong = str(loc[-1]) if loc else ""
    camel = _camel(wrong)
    if camel != wrong and camel in names:
        return camel
    close = difflib.get_close_matches(wrong, names, n=1, cutoff=0.75)
    return close[0] if close else None


def _go_numbers(value: Any) -> Any:
    """Numbers as Go's encoding/json writes them: kubectl sends the YAML float `2.0` as `2`, an integer to the server."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {key: _go_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_go_numbers(item) for item in value]
    return value


def as_wire_json(doc: dict[str, Any]) -> str:
    """The JSON the API server receives for `doc`; NaN and infinities have no JSON form (kubectl refuses them)."""
    return json.dumps(_go_numbers(doc), allow_nan=False)


def validate_document(doc: Any, *, file: str = "<input>", document: int = 0,
                      lines: dict[tuple[Any, ...], int] | None = None) -> AlignmentJob:
    """Validate one manifest as the API server receives it: strict types, camelCase names, nothing unknown."""
    if not isinstance(doc, dict):
        raise ManifestError([SpecError("<document>", "a manifest must be a YAML mapping", file, 1, document)])
    try:
        wire = as_wire_json(doc)
    except ValueError as exc:
        raise ManifestError([SpecError("<document>", f"not representable as JSON (what kubectl sends): {exc}",
                                       file, 1, document)]) from None
    try:
        return AlignmentJob.model_validate_json(wire, strict=True, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ManifestError(errors_from_validation(exc, lines, file, document)) from None


def load_text(text: str, file: str = "<input>") -> list[AlignmentJob]:
    """Parse and validate every document; raise ManifestError with all problems of all documents."""
    try:
        nodes = list(yamlio.compose_all(text))
        docs = yamlio.load_all(text)
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
