"""GGUF files (llama.cpp / Ollama's format) as spec.model.base: checked, dequantized once, then a normal model.

A `.gguf` file under any model scheme (file://, a plain path, pvc://, s3://, hub `org/repo/file.gguf` or
hf://org/repo/file.gguf) is located (downloaded for s3 and the hub), its header read with the `gguf` package's
reader (memory-mapped: no tensor is dequantized) and checked against what transformers can load, then converted
ONCE with transformers' `from_pretrained(dir, gguf_file=...)`: dequantized to the training dtype, tokenizer and
chat template from the file, saved with `save_pretrained` into a cache folder keyed by the file's sha256 and the
dtype. A second job (or rank) on the same cache finds the folder and loads it like any HF folder: no `gguf`
needed, no conversion. The folder carries `gguf-source.json` (file name, digest, architecture, tensor types),
which the model card quotes.

The cache is `<root>/gguf`, root being $ALIGN_CACHE_DIR (builtin.cache_root(), which the callers pass: this module
sits below builtin): on one machine it is shared by every run; in a pod it is the pod's /workspace/cache unless
ALIGN_CACHE_DIR points at a shared volume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import storage
from .errors import ConfigError, UpstreamError

log = logging.getLogger(__name__)

SOURCE_FILE = "gguf-source.json"
SUFFIX = ".gguf"
#: keys of transformers' GGUF config mapping that are not architectures (general.*, tokenizer.*), and
#: encoder-decoder architectures this trainer (causal LMs) cannot train
_NOT_CAUSAL_LM = {"general", "tokenizer", "t5", "umt5"}
#: llama.cpp names some architectures differently from transformers (transformers' load_gguf_checkpoint
#: renames them the same way)
_ARCH_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
INSTALL_HINT = "pip install gguf (it is in align-operator's trainer extra)"


@dataclass(frozen=True)
class Header:
    """What a GGUF file says about itself, read without dequantizing anything."""

    path: Path
    architecture: str
    name: str
    #: tensor type name (F32, Q4_1, ...) -> number of tensors of that type
    tensor_types: dict[str, int]


def is_gguf(uri: str) -> bool:
    return uri.split("?", 1)[0].lower().endswith(SUFFIX)


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise ConfigError(f"spec.model.base is a GGUF file; reading it needs the gguf package: {INSTALL_HINT}") \
            from None
    return gguf


def read_header(path: Path) -> Header:
    """Architecture, name and tensor types of a GGUF file (gguf.GGUFReader memory-maps it)."""
    gguf = _gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"{path}: not a readable GGUF file: {exc}") from None

    def text(key: str) -> str:
        field = reader.fields.get(key)
        return bytes(field.parts[field.data[0]]).decode("utf-8", "replace") if field is not None else ""

    types = Counter(tensor.tensor_type.name for tensor in reader.tensors)
    return Header(path=Path(path), architecture=text("general.architecture"), name=text("general.name"),
                  tensor_types=dict(sorted(types.items())))


def supported_architectures() -> list[str]:
    """Causal-LM architectures transformers (this install) loads from GGUF."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    return sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - _NOT_CAUSAL_LM)


def supported_tensor_types() -> list[str]:
    """Tensor types the installed `gguf` package dequantizes (transformers dequantizes through it): probed with
    one empty block each, so a newer gguf that learns a type is picked up without a table of ours."""
    import numpy as np
    gguf = _gguf()
    out = []
    for qtype in gguf.GGMLQuantizationType:
        _, type_size = gguf.GGML_QUANT_SIZES[qtype]
        try:
            gguf.dequantize(np.zeros((1, type_size), dtype=np.uint8), qtype)
        except Exception:  # NotImplementedError; a type whose probe fails otherwise cannot be trusted to load either
            continue
        out.append(qtype.name)
    return out


def problems(header: Header) -> list[str]:
    """Why transformers cannot load this file (empty when it can), each naming what is supported."""
    found = []
    arch = _ARCH_ALIASES.get(header.architecture, header.architecture)
    archs = supported_architectures()
    if arch not in archs and not (arch == "llama" and "mistral" in header.name.lower()):
        found.append(f"GGUF architecture {header.architecture or '(none)'!r} of {header.path.name} is not supported "
                     f"by transformers' GGUF loader; supported: {', '.join(archs)}")
    types = supported_tensor_types()
    bad = sorted(set(header.tensor_types) - set(types))
    if bad:
        found.append(f"GGUF tensor type(s) {', '.join(bad)} of {header.path.name} cannot be dequantized "
                     f"(by the gguf package); supported: {', '.join(types)}")
    return found


def check(header: Header) -> None:
    found = problems(header)
    if found:
        raise ConfigError("spec.model.base: " + "; ".join(found) +
                          " -> convert the model to a supported quantization (e.g. Q8_0, Q4_K_M) or use its HF folder")


def file_digest(path: Path) -> str:
    """sha256 of the file (about 1 s per GB): the cache key, so a renamed or re-uploaded copy is not converted
    again and a changed file never reuses a stale conversion."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_dir(digest: str, dtype: str, root: Path) -> Path:
    return Path(root) / "gguf" / f"{digest}-{dtype}"


def hub_file(uri: str) -> tuple[str, str] | None:
    """(repo id, file inside the repo) of a hub GGUF reference `org/repo/path/file.gguf` or hf://..."""
    rest = uri[len("hf://"):] if uri.startswith("hf://") else uri
    parts = rest.split("/")
    if "://" in rest or len(parts) < 3 or not is_gguf(rest):
        return None
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:])


def download_hub(repo_id: str, filename: str, *, revision: str | None, token: str | None) -> Path:
    """One file of a hub repository, through huggingface_hub's cache ($HF_HOME): downloaded once."""
    from huggingface_hub import hf_hub_download
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision, token=token))
    except Exception as exc:  # huggingface_hub raises many types; the message is what the user needs
        raise UpstreamError(f"cannot download {filename} from the hub repository {repo_id}: {exc}") from None


def locate(uri: str, *, base_dir: Path, cache_dir: Path, revision: str | None = None,
           token: str | None = None) -> Path:
    """The local .gguf file of a GGUF model URI (s3:// and the hub are downloaded, into their caches)."""
    scheme = storage.scheme_of(uri)
    local = None if scheme == "hf" else storage.resolve(uri, base_dir=base_dir, cache_dir=cache_dir)
    if local is not None and (scheme or Path(local).exists()):
        path = Path(local)
        if path.is_dir():  # s3://bucket/x.gguf mirrors the one object into a folder
            files = sorted(path.glob(f"*{SUFFIX}"))
            if len(files) != 1:
                raise UpstreamError(f"{uri}: expected one {SUFFIX} file in {path}, found {len(files)}")
            path = files[0]
        return path
    hub = hub_file(uri)
    if hub is None:
        raise UpstreamError(f"{uri}: no such file; a GGUF file on the hub is written org/repo/file.gguf")
    return download_hub(*hub, revision=revision, token=token)


def source_of(model_dir: Path | str) -> dict[str, Any] | None:
    """The GGUF source recorded in a converted folder (None for any other model folder)."""
    record = Path(model_dir) / SOURCE_FILE
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None


def convert(path: Path, *, root: Path, dtype: str = "float32") -> Path:
    """The from_pretrained folder of GGUF file `path` dequantized to `dtype`: made on first use, atomically.

    Several jobs may convert the same file at once on a shared cache (a PVC): each writes into a staging folder of
    its own and renames it into place (rename(2) of a folder onto a non-empty one fails, so the first rename wins
    and nobody ever sees a half-written folder); a loser drops its copy and uses the winner's, which is identical
    (same bytes, same dtype). The winner's folder is complete once SOURCE_FILE, written last, is there."""
    path = Path(path)
    digest = file_digest(path)
    target = cache_dir(digest, dtype, root)
    if (target / SOURCE_FILE).is_file():  # checked when it was converted; the header read alone takes seconds
        log.info("GGUF %s (sha256 %s): converted copy reused from %s", path.name, digest[:12], target)
        return target
    header = read_header(path)
    check(header)
    started = time.monotonic()

    def build(staging: Path) -> None:
        _dequantize_into(path, staging, dtype)
        storage.write_json_atomic(staging / SOURCE_FILE, {  # last: a folder with it is complete
            "file": path.name, "sha256": digest, "architecture": header.architecture, "name": header.name,
            "tensorTypes": header.tensor_types, "dtype": dtype})

    won = storage.build_folder_once(target, build, lambda folder: (folder / SOURCE_FILE).is_file(),
                                    f"GGUF {path.name}")
    log.info("GGUF %s (sha256 %s, %s) dequantized to %s in %.1fs: %s%s", path.name, digest[:12], header.architecture,
             dtype, time.monotonic() - started, target,
             "" if won else " (another job's conversion got there first: its identical copy is used)")
    return target


def _dequantize_into(path: Path, folder: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    _gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype))
    # from_pretrained attaches a GGUF "quantizer" that refuses save_pretrained; the weights are already plain
    # tensors, so dropping it (and the config's record of it) saves a normal folder that reloads without gguf
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
