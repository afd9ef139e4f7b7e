"""A row as one of TRL's dataset types (`Record`) and the field errors of the format parsers: the layer under
formats.py and formats_llamafactory.py (formats dispatches into the LLaMA-Factory parsers, which need these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import DataError


@dataclass
class Record:
    type: str
    data: dict[str, Any]
    where: str
    extra: dict[str, Any] = field(default_factory=dict)  #: other columns (graders read them)


def _fail(where: str, path: str, message: str) -> DataError:
    return DataError(f"{where}: field {path}: {message}")


def _bool_label(value: Any, where: str, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _fail(where, path, f"must be a boolean (desirable or not), got {value!r}")
