"""The training files of an OpenAI import (openai_import.py): where each file is (a local path, a downloaded OpenAI
file, a URI, or a placeholder to fill), which data format its rows are in, and the rows the trainer will refuse
(function calling, images), found before a GPU is spent on them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from .openai_types import Note, Options

DATA_FORMATS = {"supervised": "openai-chat", "dpo": "openai-preference", "reinforcement": "openai-rft"}
_FILE_ID = re.compile(r"^file-[A-Za-z0-9_-]+$")


def data_uri(value: str, field: str, opts: Options, notes: list[Note]) -> str:
    """A local path, a downloaded OpenAI file, or a placeholder the user must fill."""
    if _FILE_ID.match(value):
        found = None
        if opts.files_dir is not None:
            for candidate in (opts.files_dir / f"{value}.jsonl", opts.files_dir / value):
                if candidate.is_file():
                    found = candidate.resolve()
                    break
        if found is None:
            notes.append(Note(field, "approx", f"{value} is an OpenAI file ID; download it (curl "
                              f"https://api.openai.com/v1/files/{value}/content -H \"Authorization: Bearer "
                              f"$OPENAI_API_KEY\" -o {value}.jsonl) and pass --files-dir, or edit the URI"))
            path = f"{value}.jsonl"
        else:
            notes.append(Note(field, "mapped", f"{value} -> {found}"))
            path = str(found)
    elif "://" in value:
        path = value
        notes.append(Note(field, "mapped", f"-> {value}"))
    else:
        local = Path(value).expanduser()
        if not local.is_absolute() and opts.base_dir is not None:
            local = opts.base_dir / local
        path = str(local.resolve())
        state = "" if local.is_file() else " (not found here yet)"
        notes.append(Note(field, "mapped", f"-> {path}{state}"))
    if opts.data_prefix:
        path = f"{opts.data_prefix.rstrip('/')}/{Path(path).name}"
        notes.append(Note(field, "mapped", f"--data-prefix: -> {path} (upload the file there)"))
    return path


def sniff_format(uri: str, method: str) -> str:
    """openai-chat unless a readable local file holds legacy prompt/completion rows (babbage/davinci)."""
    if method != "supervised" or "://" in uri:
        return DATA_FORMATS[method]
    try:
        with open(uri, encoding="utf-8") as fh:
            first = json.loads(fh.readline() or "{}")
    except (OSError, ValueError):
        return DATA_FORMATS[method]
    return "trl" if isinstance(first, dict) and "prompt" in first and "messages" not in first else "openai-chat"


def has_image(messages: Any) -> bool:
    return any(isinstance(m, Mapping) and isinstance(m.get("content"), list) and
               any(isinstance(p, Mapping) and p.get("type") in ("image_url", "input_image") for p in m["content"])
               for m in messages or [])


def data_warnings(uri: str, field: str, notes: list[Note], limit: int = 20_000) -> None:
    """Rows the trainer will refuse (function calling, images), found before a GPU is spent on them."""
    if "://" in uri:
        return
    tools = images = 0
    try:
        with open(uri, encoding="utf-8") as fh:
            for index, line in enumerate(fh):
                if index >= limit:
                    break
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # the trainer reports malformed rows with file and line
                if not isinstance(row, dict):
                    continue
                source = row.get("input") if isinstance(row.get("input"), dict) else row
                tools += bool(source.get("tools"))
                images += has_image(source.get("messages"))
    except OSError:
        return
    if tools:
        notes.append(Note(field, "dropped", f"{tools} row(s) define tools (function calling), which the trainer "
                          "does not train on yet: remove them or the job fails with a DataError naming the row"))
    if images:
        notes.append(Note(field, "dropped", f"{images} row(s) contain images; only text content is supported"))
