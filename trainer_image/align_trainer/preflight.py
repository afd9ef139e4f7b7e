"""Preflight: in seconds, before any model is loaded, everything a run would otherwise discover hours later.

The same checks run in the pod (the first thing `python -m align_trainer` does) and locally
(`alignctl validate --preflight`, which `alignctl local run` and `alignctl submit` of local files use):

- every data URI resolves and its first rows parse in the declared format;
- every grader template `{{item.x}}` resolves against the first rows' item fields, and a judge endpoint answers;
- spec.output.uri and the checkpoint location are writable (a marker is written and deleted);
- in the pod, the packages of the GPU speed-ups asked for (hyperparameters.vllm, ligerKernel) are in the image.

The batch/group constraints (grpo/rloo: batchSize x gradientAccumulationSteps a multiple of numGenerations)
are part of the spec itself (align_api.spec), so the manifest that reaches the preflight already holds them.

Each problem names the spec field, the file and line where it went wrong, and what to do. In the pod a
failed preflight exits with ExitCode.PREFLIGHT_FAILED, which the Job's podFailurePolicy does not retry.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from align_api import AlignmentJob
from align_api.data import Dataset as DatasetSpec
from align_api.graders import LabelModelGrader, MultiGrader, ScoreModelGrader, StringCheckGrader, TextSimilarityGrader

from . import storage
from .errors import DataError, PreflightFailed, TrainerError
from .contracts import DataKind

log = logging.getLogger(__name__)

#: Rows read from each dataset: enough to catch a wrong format or a missing column, few enough to take seconds.
FIRST_ROWS = 5
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
#: A judge endpoint that does not answer within this many seconds is reported.
ENDPOINT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Problem:
    """One preflight finding: the spec field, what is wrong (with file:line of data when relevant), what to do."""

    field: str
    message: str
    hint: str = ""
    #: "data" for a dataset that is missing or has a bad row (the job fails with DataError, as a full read
    #: would), "config" for everything else (PreflightFailed)
    kind: str = "config"

    def render(self, manifest: Path | None = None, lines: dict[tuple[str, ...], int] | None = None) -> str:
        where = ""
        if manifest is not None:
            line = line_of(lines or {}, self.field)
            where = f"{manifest}:{line}: " if line else f"{manifest}: "
        return f"{where}{self.field}: {self.message}" + (f" -> {self.hint}" if self.hint else "")


# --------------------------------------------------------------------------- manifest lines
def manifest_lines(text: str, document: int = 0) -> dict[tuple[str, ...], int]:
    """{(spec, data, train, uri): line} for one document of a YAML manifest (1-based lines)."""
    try:
        nodes = [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
    except yaml.YAMLError:
        return {}
    if document >= len(nodes):
        return {}
    out: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                out[(*prefix, str(key.value))] = key.start_mark.line + 1
                walk(value, (*prefix, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                out[(*prefix, str(index))] = item.start_mark.line + 1
                walk(item, (*prefix, str(index)))

    walk(nodes[document], ())
    return out


def line_of(lines: dict[tuple[str, ...], int], field: str) -> int | None:
    """The line of `field` (dotted, [i] for lists), or of its closest written parent (a default has no line)."""
    parts = tuple(p for p in field.replace("[", ".").replace("]", "").split(".") if p)
    while parts:
        if parts in lines:
            return lines[parts]
        parts = parts[:-1]
    return None


# --------------------------------------------------------------------------- data
def dataset_fields(job: AlignmentJob) -> list[tuple[str, DatasetSpec]]:
    """(spec field, dataset) of every dataset the job reads."""
    data = job.spec.data
    out = [("spec.data.train", data.train)]
    if data.eval is not None:
        out.append(("spec.data.eval", data.eval))
    evaluation = job.spec.evaluation
    if evaluation is not None and evaluation.prompts is not None:
        out.append(("spec.evaluation.prompts", evaluation.prompts))
    return out


def looks_like_file(uri: str) -> bool:
    """A scheme-less URI that names a data file (not a hub dataset id such as org/name)."""
    return "://" not in uri and (uri.startswith(("/", "./", "../", "~")) or uri.endswith(DATA_SUFFIXES))


def local_data_path(uri: str, base_dir: Path, *, pvc: bool = True) -> Path | None:
    """Where a local dataset is (file://, pvc:// when mounted, a path), or None for remote ones (s3://, hub,
    job://)."""
    scheme = storage.scheme_of(uri)
    if scheme == "pvc":
        if not pvc:
            return None
        return storage.pvc_path(uri)
    if scheme == "file" or looks_like_file(uri) or (not scheme and (base_dir / uri).exists()):
        return storage.file_path(uri, base_dir)
    return None


def first_rows(path: Path, limit: int = FIRST_ROWS) -> list[Any]:
    """The first `limit` rows (data.Row, with file and line) of a local file or folder."""
    from . import data
    files = data._files(path)
    rows: list[Any] = []
    for file in files:
        reader = {".jsonl": data._read_jsonl, ".json": data._read_json}.get(file.suffix, data._read_table)
        rows.extend(itertools.islice(reader(file), limit - len(rows)))
        if len(rows) >= limit:
            break
    return rows


def check_dataset(field: str, spec: DatasetSpec, base_dir: Path, kind: DataKind, *, in_pod: bool = True
                  ) -> tuple[list[Problem], list[dict], list[str]]:
    """(problems, the first rows converted to `kind`, where each came from: file:line) for one dataset."""
    from .data import parse_rows, rename_fields
    from .formats import convert
    path = local_data_path(spec.uri, base_dir, pvc=in_pod)
    if path is None:
        return [], [], []  # s3://, hub and job:// data are fetched by the trainer; nothing local to look at
    if not path.exists():
        hint = (f"relative paths resolve against the manifest's directory ({base_dir}) or the working directory "
                f"({Path.cwd()}); fix the path"
                if not Path(str(spec.uri).removeprefix("file://")).is_absolute() else "fix the path")
        return [Problem(f"{field}.uri", f"{path} does not exist", hint, "data")], [], []
    try:
        rows = [rename_fields(r, spec.fields) for r in first_rows(path)]
        if not rows:
            return [Problem(f"{field}.uri", f"{path} has no rows", "point it at a file with data", "data")], [], []
        records = parse_rows(spec, rows)
        converted = convert(records, kind) if records else []
    except TrainerError as exc:
        return [Problem(f"{field}.format" if spec.format != "auto" else f"{field}.uri", str(exc),
                        "fix the row, or set the right format / fields mapping", "data")], [], []
    where = [r.where for r in records] if len(records) == len(converted) else [str(path)] * len(converted)
    return [], converted, where


# --------------------------------------------------------------------------- graders
def grader_templates(grader: Any, field: str) -> Iterator[tuple[str, str]]:
    """(spec field, template text) of every template in a grader tree."""
    if isinstance(grader, (StringCheckGrader, TextSimilarityGrader)):
        yield f"{field}.input", grader.input
        yield f"{field}.reference", grader.reference
    elif isinstance(grader, (ScoreModelGrader, LabelModelGrader)):
        for index, message in enumerate(grader.input):
            yield f"{field}.input[{index}].content", message.content
    elif isinstance(grader, MultiGrader):
        for key, sub in grader.graders.items():
            yield from grader_templates(sub, f"{field}.graders.{key}")


def check_templates(field: str, grader: Any, items: Sequence[dict[str, Any]], where: Sequence[str]
                    ) -> list[Problem]:
    """Every `{{item.x}}` of the grader must exist in every sampled item (sample.* is the model's answer)."""
    from difflib import get_close_matches

    from .graders.templates import TemplateError, lookup, make_sample, variables
    problems: list[Problem] = []
    sample = make_sample("{}")  # valid JSON, so output_json paths are not judged here (they depend on answers)
    for path, template in grader_templates(grader, field):
        for variable in variables(template):
            if not variable.startswith("item"):
                continue
            for item, place in zip(items, where):
                try:
                    lookup(variable, sample, item)
                except TemplateError as exc:
                    key = variable.split(".")[1] if "." in variable else ""
                    close = [k for k in item if key and (key in k or k in key)] or \
                        get_close_matches(key, list(item), n=1, cutoff=0.5)
                    hint = (f"did you mean {{{{item.{close[0]}}}}}? " if close else "") + \
                        f"the rows have: {', '.join(sorted(item))}"
                    problems.append(Problem(path, f"{exc} in {place}; every grading would fail and score 0",
                                            hint))
                    break
    return problems


def check_endpoints(field: str, grader: Any) -> list[Problem]:
    """A judge endpoint must answer `GET {base_url}/models` (any HTTP answer proves it is there)."""
    import httpx
    problems = []
    for sub_field, sub in _walk(grader, field):
        endpoint = getattr(sub, "endpoint", None)
        if endpoint is None:
            continue
        url = endpoint.base_url.rstrip("/") + "/models"
        try:
            httpx.get(url, timeout=min(ENDPOINT_TIMEOUT, endpoint.timeout_seconds))
        except httpx.HTTPError as exc:
            problems.append(Problem(f"{sub_field}.endpoint.base_url", f"{url} does not answer: {exc}",
                                    "start the judge server or fix the URL"))
    return problems


def _walk(grader: Any, field: str) -> Iterator[tuple[str, Any]]:
    yield field, grader
    if isinstance(grader, MultiGrader):
        for key, sub in grader.graders.items():
            yield from _walk(sub, f"{field}.graders.{key}")


def grader_items(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a grader sees as `item` for prompt-only rows (as in training and evaluation)."""
    from .graders.rewards import row_items
    return row_items(rows)


# --------------------------------------------------------------------------- output
def check_writable(field: str, directory: Path, hint: str) -> list[Problem]:
    """Write and delete a marker file in `directory`; folders created for it are removed again (a check
    leaves nothing behind)."""
    marker = directory / f".align-preflight-{uuid.uuid4().hex[:8]}"
    created = [p for p in (directory, *directory.parents) if not p.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        marker.write_text("preflight\n", encoding="utf-8")
        marker.unlink()
    except OSError as exc:
        return [Problem(field, f"{directory} is not writable: {exc.strerror or exc}", hint)]
    finally:
        for folder in created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break
    return []


def check_s3_writable(field: str, uri: str) -> list[Problem]:
    bucket, prefix = storage.split_s3(uri)
    key = "/".join(p for p in (prefix, f".align-preflight-{uuid.uuid4().hex[:8]}") if p)
    try:
        client = storage.s3_client()
        client.put_object(Bucket=bucket, Key=key, Body=b"preflight\n")
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore raises many types; the message is what the user needs
        return [Problem(field, f"cannot write to {uri}: {exc}",
                        "check the bucket name and spec.secrets.storageCredentials")]
    return []


def check_output(job: AlignmentJob, base_dir: Path, output_dir: Path | None, *, upload: bool = True,
                 in_pod: bool = True) -> list[Problem]:
    """spec.output.uri (unless `upload` is False: `--output` keeps everything local) and the working directory.
    Outside a pod only file paths are checked (s3:// credentials and pvc:// claims exist only in the pod)."""
    problems: list[Problem] = []
    uri = job.spec.output.uri if upload else None
    if uri:
        scheme = storage.scheme_of(uri)
        if scheme == "s3" and in_pod:
            problems += check_s3_writable("spec.output.uri", uri)
        elif scheme in ("file", "") or (scheme == "pvc" and in_pod):
            root = storage.pvc_path(uri) if scheme == "pvc" else storage.file_path(uri, base_dir)
            problems += check_writable("spec.output.uri", root, "choose a directory this job may write to")
    if output_dir is not None:
        field = "spec.checkpoints.volume" if job.spec.checkpoints.volume else "spec.checkpoints"
        problems += check_writable(field, output_dir, "checkpoints and the final adapter are written here first")
    return problems


# --------------------------------------------------------------------------- all together
def check(job: AlignmentJob, *, base_dir: Path, output_dir: Path | None, kind: DataKind | None = None,
          endpoints: bool = True, upload: bool = True, in_pod: bool = True) -> list[Problem]:
    """Every preflight problem of `job` (empty when it may start). `output_dir`: the local working directory
    (checkpoints); `kind`: the algorithm's DataKind (looked up when None); `upload`: spec.output.uri is used;
    `in_pod`: pvc:// and s3:// are reachable (False for `alignctl validate --preflight`)."""
    if kind is None:
        from .algorithms import load
        kind = load(job.spec.algorithm.value).DATA
    problems = check_output(job, base_dir, output_dir, upload=upload, in_pod=in_pod)
    if in_pod:  # alignctl's local preflight runs outside the trainer image: what it has installed says nothing
        problems += check_packages(job)
    datasets = dict(dataset_fields(job))
    bad: set[str] = set()
    for field, spec in datasets.items():
        found, _, _ = check_dataset(field, spec, base_dir, DataKind.PROMPT_ONLY if field == "spec.evaluation.prompts"
                                    else kind, in_pod=in_pod)
        problems += found
        bad |= {field} if found else set()
    graders = [("spec.grader", job.spec.grader, "spec.data.train")]
    if evaluates(job):
        evaluation = job.spec.evaluation
        source = next(f for f in ("spec.evaluation.prompts", "spec.data.eval", "spec.data.train") if f in datasets)
        grader = evaluation.grader if evaluation is not None and evaluation.grader else job.spec.grader
        graders.append(("spec.grader" if grader is job.spec.grader else "spec.evaluation.grader", grader, source))
    for field, grader, source in graders:
        if grader is None:
            continue
        if source not in bad:
            rows, where = _prompt_rows(datasets[source], base_dir, in_pod)
            problems += check_templates(field, grader, grader_items(rows), where)
        if endpoints:
            problems += check_endpoints(field, grader)
    return _unique(problems)


def check_packages(job: AlignmentJob) -> list[Problem]:
    """The speed-ups the job asks for whose package this image lacks (an ImportError mid-run otherwise)."""
    from .accel import REMEDY, missing_packages
    return [Problem(f"spec.hyperparameters.{field}", f"needs the {package!r} package, which this trainer image lacks",
                    REMEDY[field])
            for field, package in missing_packages(job.spec.hyperparameters)]


def evaluates(job: AlignmentJob) -> bool:
    """Whether a policy evaluation with a grader runs after training (evaluation.plan's rule, without a
    trainer context): spec.evaluation.enabled, else on by default for the RL and preference algorithms."""
    from .evaluation.plan import DEFAULT_ON  # not the runner: its imports cost 0.1-0.2 s
    evaluation = job.spec.evaluation
    enabled = evaluation.enabled if evaluation is not None and evaluation.enabled is not None else \
        job.spec.algorithm in DEFAULT_ON
    return bool(enabled) and job.spec.algorithm.value != "reward"


def _unique(problems: list[Problem]) -> list[Problem]:
    """spec.grader checked for training and for evaluation finds the same problem twice: say it once."""
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        if (problem.field, problem.message) not in seen:
            seen.add((problem.field, problem.message))
            out.append(problem)
    return out


def _prompt_rows(spec: DatasetSpec, base_dir: Path, in_pod: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The first rows as prompt-only rows (what graders see) and where they are; none when they do not convert
    (e.g. plain text)."""
    found, rows, where = check_dataset("", spec, base_dir, DataKind.PROMPT_ONLY, in_pod=in_pod)
    return ([], []) if found else (rows, where)


def run(job: AlignmentJob, *, base_dir: Path, output_dir: Path | None, kind: DataKind,
        manifest: Path | None = None, upload: bool = True) -> None:
    """The pod's preflight: raise PreflightFailed listing every problem (exit code PREFLIGHT_FAILED)."""
    problems = check(job, base_dir=base_dir, output_dir=output_dir, kind=kind, upload=upload)
    if problems and all(p.kind == "data" for p in problems):
        # bad data stays a DataError (exit 11), message first: "<file>:<line>: field <f>: ..." as a full read says it
        raise DataError("\n".join(f"{p.message} ({p.field}: {p.hint})" for p in problems))
    if problems:
        lines = manifest_lines(manifest.read_text(encoding="utf-8")) if manifest and manifest.is_file() else {}
        raise PreflightFailed(f"{len(problems)} problem(s) found before training:\n"
                              + "\n".join(f"- {p.render(manifest, lines)}" for p in problems))
    log.info("preflight: data, grader templates and outputs are fine")


__all__ = ["Problem", "check", "line_of", "manifest_lines", "run"]
