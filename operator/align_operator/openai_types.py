"""The records of an OpenAI import (openai_import.py): what happened to each request field, what the request
cannot choose for us, and the error for a request that cannot be converted at all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from align_api import Algorithm

Kind = Literal["mapped", "default", "approx", "dropped"]


@dataclass(frozen=True)
class Note:
    """What happened to one OpenAI field."""

    field: str
    kind: Kind
    message: str

    def __str__(self) -> str:
        return f"{self.kind:>7}  {self.field}: {self.message}"


class RequestError(ValueError):
    """The request cannot be converted at all (not a fine-tuning request, unknown method)."""


@dataclass(frozen=True)
class Options:
    """Choices the request cannot make for us."""

    name: str | None = None               #: metadata.name (default: from suffix or the file name)
    model: str | None = None              #: replace the OpenAI model (builtin://tiny, a hub id, s3://...)
    files_dir: Path | None = None         #: where downloaded OpenAI files are (<file-id>.jsonl)
    base_dir: Path | None = None          #: relative paths in the request are relative to this
    data_prefix: str | None = None        #: rewrite data URIs to <prefix>/<basename> (s3://bucket/data)
    rl_algorithm: Algorithm = Algorithm.GRPO
    source: str | None = None             #: the request file's name, recorded in an annotation
