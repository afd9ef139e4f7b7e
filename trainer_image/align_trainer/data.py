"""Datasets: read a spec.data split, parse each row of its format, convert to what the algorithm trains on.

Three steps, all before any model is loaded, so a bad row fails the job in seconds:
1. `read_rows`: JSONL / JSON / Parquet / CSV file or folder (path, file://, s3://, pvc://) or a hub dataset,
   each row tagged with where it came from (file and line) for error messages.
2. `parse_row` (formats.py): one row of a format (openai-chat, openai-preference, openai-rft, trl,
   ranked-pair, LLaMA-Factory's alpaca and sharegpt, after the `fields` renaming) -> a `Record` of one TRL dataset type.
3. `convert` (formats.py): Records -> rows of the algorithm's `DataKind` (e.g. preference -> unpaired for KTO).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from align_api.data import Dataset as DatasetSpec
from align_api.data import DataSpec

from . import storage
from .errors import DataError, TrainerError
from .formats import Record, convert, detect_format, parse_row
from .contracts import ITEM_AS_WRITTEN, DataKind
from .formats_llamafactory import detect_mapped

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


@dataclass(frozen=True)
class Row:
    """One source row and where it came from."""

    data: dict[str, Any]
    file: str
    line: int  #: 1-based line for JSONL and JSON arrays, 1-based row number otherwise
    item: int | None = None  #: 1-based position in a JSON array

    def where(self) -> str:
        return f"{self.file}:{self.line}" + (f" (item {self.item})" if self.item is not None else "")


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(value, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object, got {type(value).__name__}")
            yield Row(value, str(path), number)


def _item_lines(text: str) -> list[int]:
    """The 1-based line where each item of a top-level JSON array starts (LLaMA-Factory files are pretty-printed
    arrays: an error names the line an editor jumps to, not only the item's index)."""
    decoder, lines = json.JSONDecoder(), []
    pos, line = text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    while True:
        start = pos
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        line += text.count("\n", start, pos)
        if pos >= len(text) or text[pos] == "]":
            return lines
        lines.append(line)
        _, end = decoder.raw_decode(text, pos)
        line += text.count("\n", pos, end)
        pos = end


def _read_json(path: Path) -> Iterator[Row]:
    text = path.read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value, lines = value["data"], None
    elif isinstance(value, list):
        lines = _item_lines(text)
    else:
        raise DataError(f"{path}: a .json dataset must be a list of objects (or {{\"data\": [...]}})")
    for number, item in enumerate(value, start=1):
        row = Row(item, str(path), lines[number - 1], number) if lines else Row(item, f"{path} item", number)
        if not isinstance(item, dict):
            raise DataError(f"{row.where()}: must be an object, got {type(item).__name__}")
        yield row


def _read_table(path: Path) -> Iterator[Row]:
    import datasets
    kind = "parquet" if path.suffix == ".parquet" else "csv"
    try:
        table = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as exc:  # pyarrow/pandas parse errors
        raise DataError(f"{path}: cannot read {kind}: {exc}") from None
    for number, item in enumerate(table, start=1):
        yield Row(dict(item), f"{path} row", number)


def _read_hub(name: str, split: str) -> Iterator[Row]:
    import datasets
    try:
        table = datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise DataError(f"hub dataset {name} (split {split}): cannot load: {exc}") from None
    for number, item in enumerate(table, start=1):
        yield Row(dict(item), f"{name}[{split}] row", number)


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{path}: no {', '.join(SUFFIXES)} files in this folder")
        return files
    return [path]


def read_rows(spec: DatasetSpec, *, base_dir: Path, cache_dir: Path) -> list[Row]:
    """Every row of one split, in file order."""
    try:
        location = storage.resolve(spec.uri, base_dir=base_dir, cache_dir=cache_dir)
    except TrainerError as exc:
        raise DataError(f"dataset {spec.uri}: {exc}") from None
    path = Path(location)
    if not path.exists():
        if storage.scheme_of(spec.uri) in ("", "hf") and "/" in location and not location.startswith((".", "/")):
            return list(_read_hub(location, spec.split))
        raise DataError(f"dataset {spec.uri}: {path} does not exist")
    rows: list[Row] = []
    for file in _files(path):
        reader = {".jsonl": _read_jsonl, ".json": _read_json}.get(file.suffix, _read_table)
        rows.extend(reader(file))
    if not rows:
        raise DataError(f"dataset {spec.uri}: no rows")
    return rows


def rename_fields(row: Row, fields: dict[str, str] | None) -> Row:
    """Apply spec `fields` ({canonical: column}); a missing mapped column is an error naming it."""
    if not fields:
        return row
    data = dict(row.data)
    for canonical, column in fields.items():
        if column not in data:
            raise DataError(f"{row.where()}: field {column!r} (mapped to {canonical!r} by data.fields) is missing; "
                            f"the row has: {', '.join(sorted(row.data))}")
        data[canonical] = data.pop(column)
    return dataclasses.replace(row, data=data)


def _source_column(message: str, fields: dict[str, str] | None) -> str:
    """A parse error names the canonical field; with `fields`, name the file's own column the user knows."""
    match = re.search(r": field ([A-Za-z_0-9]+)", message)
    if not fields or not match or match.group(1) not in fields:
        return message
    return message[:match.start(1)] + fields[match.group(1)] + message[match.end(1):]


def parse_rows(spec: DatasetSpec, rows: list[Row]) -> list[Record]:
    """Renamed rows of one split as Records in `spec.format` (auto: detected from the first row); None rows
    (no training signal) are left out. Errors name the file's own column."""
    fmt = spec.format if spec.format != "auto" else \
        detect_mapped(spec.fields, rows[0].data) or detect_format(rows[0].data, rows[0].where())
    try:
        return [r for r in (parse_row(fmt, row.data, row.where(), tags=spec.tags) for row in rows) if r is not None]
    except DataError as exc:
        raise DataError(_source_column(str(exc), spec.fields)) from None


def parse_split(spec: DatasetSpec, *, base_dir: Path, cache_dir: Path, seed: int) -> list[Record]:
    """Read, rename and parse every row of a split (all errors are DataError naming file, line, field)."""
    rows = [rename_fields(r, spec.fields) for r in read_rows(spec, base_dir=base_dir, cache_dir=cache_dir)]
    records = parse_rows(spec, rows)
    if not records:
        raise DataError(f"dataset {spec.uri}: no usable rows (all {len(rows)} rows carry no preference)")
    first = records[0].type
    for record in records:
        if record.type != first:
            raise DataError(f"{record.where}: row is a {record.type} row but the file started with {first} rows; "
                            "one dataset must hold one type of row")
    if spec.max_samples and spec.max_samples < len(records):
        random.Random(seed).shuffle(records)
        records = records[: spec.max_samples]
    return records


def load_for(kind: DataKind, data: DataSpec, *, base_dir: Path, cache_dir: Path, seed: int) -> tuple[Any, Any]:
    """(train, eval) as `datasets.Dataset` rows of `kind`; eval is None when there is no eval split."""
    train = parse_split(data.train, base_dir=base_dir, cache_dir=cache_dir, seed=seed)
    evals = parse_split(data.eval, base_dir=base_dir, cache_dir=cache_dir, seed=seed) if data.eval else None
    if evals is None and data.eval_fraction:
        shuffled = train[:]
        random.Random(seed).shuffle(shuffled)
        cut = max(1, int(round(len(shuffled) * data.eval_fraction)))
        evals, train = shuffled[:cut], shuffled[cut:]
    train_rows = convert(train, kind)
    if not train_rows:
        raise DataError(f"dataset {data.train.uri}: no usable rows for {kind.value} training")
    eval_rows = convert(evals, kind) if evals else None
    if kind == DataKind.PROMPT_ONLY:
        train_rows, eval_rows = keep_items_as_written(train_rows), keep_items_as_written(eval_rows)
    return _table(train_rows, data.train.uri), (_table(eval_rows, data.eval.uri if data.eval else "eval")
                                                if eval_rows else None)


def _nested(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value))


def keep_items_as_written(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A table gives nested fields one schema across rows: each row's dicts gain every other row's keys, set to
    None (IFBench's per-row checker `kwargs` then reach the grader with keys its checker does not take). Rows with
    nested fields other than the prompt keep those fields as written in ITEM_AS_WRITTEN, which graders read back."""
    if not rows or not any(_nested(v) for row in rows for k, v in row.items() if k != "prompt"):
        return rows
    return [{**row, ITEM_AS_WRITTEN: json.dumps({k: v for k, v in row.items() if k != "prompt" and _nested(v)})}
            for row in rows]


def _table(rows: list[dict[str, Any]], uri: str) -> Any:
    import datasets
    try:
        return datasets.Dataset.from_list(rows)
    except (TypeError, ValueError) as exc:  # pyarrow: a column changes type between rows
        raise DataError(f"dataset {uri}: columns must have one type across rows: {exc}") from None
