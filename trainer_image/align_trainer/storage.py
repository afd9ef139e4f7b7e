"""Where artifacts live: resolve model/data/adapter URIs to local paths, and upload the final artifacts.

Schemes: builtin:// (handled by models.py), hub ids / hf://, file:// and plain paths (relative to the
manifest's directory), s3://bucket/prefix (boto3; credentials and endpoint only from the environment the
operator sets from Secret references), pvc://claim/path (a volume mounted under $ALIGN_PVC_ROOT/claim),
job://name (another job's output, resolved by the operator into $ALIGN_RESOLVED_URIS).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

from align_api.constants import ENV_S3_ENDPOINT_URL

from .errors import ConfigError, UpstreamError

ENV_PVC_ROOT = "ALIGN_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/pvc"
#: JSON object {"job://name": "<uri>"} written by the operator from status.resolvedUris.
ENV_RESOLVED_URIS = "ALIGN_RESOLVED_URIS"
_COMPLETE = ".align-complete"


def json_safe(value: Any) -> Any:
    """`value` with every NaN/inf float replaced by null: strict JSON that any reader accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write then rename, so a reader (the operator, `alignctl report`, a sidecar) never sees half a file;
    on failure nothing is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are for other users and sidecars too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any, *, indent: int = 2) -> None:
    """`data` as strict JSON (non-finite numbers become null), written atomically."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n")


def build_folder_once(target: Path, build: Callable[[Path], None], finished: Callable[[Path], bool],
                      what: str) -> bool:
    """Make cache folder `target` with `build(staging)`, atomically, where several processes may build it at once
    (pytest-xdist workers, jobs on a shared PVC): each builds in a staging folder of its own and renames it into
    place; rename(2) of a folder onto a non-empty one fails, so the first rename wins and nobody sees a half-written
    folder. True if this call's copy was published; False if another builder's copy (`finished(target)`: complete)
    won, which the caller uses (the builds are identical). A rename that fails with no finished copy in place is an
    UpstreamError naming the folder (`what` names the model), never a missing or half-written folder returned."""
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        build(staging)
        try:
            staging.rename(target)
            return True
        except OSError as exc:
            if finished(target):
                return False
            raise UpstreamError(f"{what}: cannot move the built folder into the cache as {target} ({exc}); if that "
                                "folder is a leftover of an interrupted build, delete it") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else ""


def pvc_path(uri: str) -> Path:
    """pvc://claim/path -> $ALIGN_PVC_ROOT/claim/path (the operator mounts each claim under its name)."""
    rest = uri[len("pvc://"):]
    return Path(os.environ.get(ENV_PVC_ROOT, DEFAULT_PVC_ROOT)) / rest


def file_path(uri: str, base_dir: Path) -> Path:
    """file:///abs, file://rel or a plain path; relative ones resolve against the manifest's directory, else the
    working directory (in a pod the manifest is the mounted config, so a relative path is the pod's working
    directory's, as for any process: the local cluster runs pods in the directory `alignctl local up --cwd` names)."""
    raw = uri[len("file://"):] if uri.startswith("file://") else uri
    path = Path(raw).expanduser()
    if path.is_absolute():
        return path
    if not (base_dir / path).exists() and (Path.cwd() / path).exists():
        return Path.cwd() / path
    return base_dir / path


def resolve_job_uri(uri: str) -> str:
    try:
        table = json.loads(os.environ.get(ENV_RESOLVED_URIS, "{}"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"${ENV_RESOLVED_URIS} is not JSON: {exc}") from None
    if uri not in table:
        raise UpstreamError(f"{uri}: the upstream job's output is not resolved (is the job finished?); "
                            f"the operator passes it in ${ENV_RESOLVED_URIS}")
    return table[uri]


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def s3_client():  # type: ignore[no-untyped-def]
    """A boto3 S3 client configured only from the environment (AWS_* variables, AWS_ENDPOINT_URL_S3)."""
    import boto3
    endpoint = os.environ.get(ENV_S3_ENDPOINT_URL) or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def download_s3(uri: str, cache_dir: Path) -> Path:
    """Mirror s3://bucket/prefix into the cache (once: a completed download leaves a marker file).

    A prefix naming one object downloads that file; otherwise every object under `prefix/` is fetched.
    """
    bucket, prefix = split_s3(uri)
    target = cache_dir / "s3" / bucket / (prefix or "_root")
    if (target.parent / (target.name + _COMPLETE)).exists():
        return _single_file(target)
    client = s3_client()
    try:
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
    except Exception as exc:  # botocore raises many types; the message is what the user needs
        raise UpstreamError(f"{uri}: cannot list objects: {exc}") from None
    if not keys:
        raise UpstreamError(f"{uri}: no objects under this prefix")
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        exact = keys == [prefix]
        for key in keys:
            rel = Path(key).name if exact else os.path.relpath(key, prefix or ".")
            if rel.startswith(".."):
                continue  # "prefix" matched a sibling such as prefix-old/...
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(dest))
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UpstreamError(f"{uri}: download failed: {exc}") from None
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    (target.parent / (target.name + _COMPLETE)).touch()
    return _single_file(target)


def _single_file(target: Path) -> Path:
    """A prefix that was one object (data file) resolves to that file rather than its folder."""
    entries = list(target.iterdir()) if target.is_dir() else []
    if len(entries) == 1 and entries[0].is_file() and entries[0].suffix in (".jsonl", ".json", ".parquet", ".csv"):
        return entries[0]
    return target


def resolve(uri: str, *, base_dir: Path, cache_dir: Path) -> str:
    """A local path (as str) for file/pvc/s3/job URIs; hub ids are returned unchanged (from_pretrained
    downloads them with $HF_TOKEN)."""
    scheme = scheme_of(uri)
    if scheme == "job":
        return resolve(resolve_job_uri(uri), base_dir=base_dir, cache_dir=cache_dir)
    if scheme == "s3":
        return str(download_s3(uri, cache_dir))
    if scheme == "pvc":
        path = pvc_path(uri)
    elif scheme == "file" or (not scheme and (uri.startswith(("/", "./", "../", "~")) or
                                             (base_dir / uri).exists() or (Path.cwd() / uri).exists())):
        path = file_path(uri, base_dir)
    elif scheme == "hf":
        return uri[len("hf://"):]
    elif not scheme:
        return uri  # hub id
    else:
        raise ConfigError(f"{uri}: unsupported scheme {scheme!r}")
    if not path.exists():
        raise UpstreamError(f"{uri}: {path} does not exist")
    return str(path)


def upload(local: Path, uri: str, *, base_dir: Path, name: str | None = None) -> str:
    """Copy a finished local directory (or file) to `<spec.output.uri>/<name>`; returns that URI.

    file:// and pvc:// targets are written next to the destination and renamed into place, so a reader
    never sees half an artifact; on S3 the README.md (model card) is uploaded last and marks completeness.
    """
    name = name or local.name
    scheme = scheme_of(uri)
    if scheme == "s3":
        bucket, prefix = split_s3(uri)
        client = s3_client()
        key_root = "/".join(x for x in (prefix, name) if x)
        if local.is_file():
            client.upload_file(str(local), bucket, key_root)
            return f"s3://{bucket}/{key_root}"
        files = sorted(p for p in local.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == "README.md")  # the model card last
        try:
            for path in files:
                client.upload_file(str(path), bucket, f"{key_root}/{path.relative_to(local).as_posix()}")
        except Exception as exc:
            raise UpstreamError(f"upload to {uri} failed: {exc}") from None
        return f"s3://{bucket}/{key_root}"
    if scheme in ("pvc", "file", ""):
        root = pvc_path(uri) if scheme == "pvc" else file_path(uri, base_dir)
        dest = root / name
        staging = root / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        root.mkdir(parents=True, exist_ok=True)
        if local.is_file():
            shutil.copy2(local, staging)
        else:
            shutil.copytree(local, staging)
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(staging, dest)
        return f"{uri.rstrip('/')}/{name}" if scheme else str(dest)
    raise ConfigError(f"{uri}: output must be file://, s3:// or pvc://")
