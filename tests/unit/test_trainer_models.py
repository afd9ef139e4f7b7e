"""Trainer models: device/precision choices, 4-bit config, builtin model and tokenizer, URI resolution."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path

import pytest

from align_api.hyperparameters import Hyperparameters
from align_api.model import ModelSpec
from align_trainer import builtin, storage
from align_trainer.errors import ConfigError, UpstreamError
from align_trainer.models import choose_device, quantization_config


def spec(**model: object) -> ModelSpec:
    return ModelSpec.model_validate({"base": "builtin://tiny", **model})


def test_cpu_defaults_to_fp32() -> None:
    dev = choose_device(spec(), Hyperparameters(), gpus=0, cuda=False, bf16_supported=False)
    assert (dev.device, dev.dtype, dev.bf16, dev.fp16, dev.attn_implementation) == ("cpu", "float32", False, False, None)


def test_gpu_auto_bf16_and_flash_attention() -> None:
    dev = choose_device(spec(attention="flash_attention_2"), Hyperparameters(), gpus=1, cuda=True,
                        bf16_supported=True, flash_attn=True)
    assert (dev.device, dev.dtype, dev.bf16, dev.attn_implementation) == ("cuda", "bfloat16", True, "flash_attention_2")


def test_gpu_without_bf16_uses_fp16_amp_on_fp32_weights() -> None:
    dev = choose_device(spec(), Hyperparameters(), gpus=1, cuda=True, bf16_supported=False)
    assert (dev.dtype, dev.fp16, dev.bf16) == ("float32", True, False)


@pytest.mark.parametrize("model, hp, gpus, cuda, message", [
    ({"quantization": {"bits": 4}}, {}, 0, False, "quantization needs CUDA"),
    ({"quantization": {"bits": 4}}, {}, 1, False, "quantization needs CUDA"),
    ({}, {"precision": "bf16"}, 0, False, "needs a GPU"),
    ({"attention": "flash_attention_2"}, {}, 0, False, "flash_attention_2 needs CUDA"),
])
def test_impossible_requests_are_config_errors(model: dict, hp: dict, gpus: int, cuda: bool, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        choose_device(spec(**model), Hyperparameters(**hp), gpus=gpus, cuda=cuda, bf16_supported=False, flash_attn=False)


def test_flash_attention_without_package() -> None:
    with pytest.raises(ConfigError, match="flash-attn package"):
        choose_device(spec(attention="flash_attention_2"), Hyperparameters(), gpus=1, cuda=True, bf16_supported=True,
                      flash_attn=False)


def test_nf4_config() -> None:
    import torch
    q = spec(quantization={"bits": 4}).quantization
    cfg = quantization_config(q, cuda=True)
    assert cfg.load_in_4bit and not cfg.load_in_8bit
    assert cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
    assert cfg.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(spec(quantization={"bits": 8}).quantization, cuda=True).load_in_8bit
    with pytest.raises(ConfigError, match="needs CUDA"):
        quantization_config(q, cuda=False)
    assert quantization_config(None) is None


def test_builtin_tokenizer_is_byte_level_with_chat_template() -> None:
    tok = builtin.build_tokenizer()
    text = "héllo ✓"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8")) and tok.decode(ids) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == builtin.IM_END and tok.pad_token == builtin.PAD


def test_builtin_model_is_deterministic_and_small() -> None:
    a, b = builtin.build_model("tiny"), builtin.build_model("tiny")
    assert all((x == y).all() for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert 50_000 < sum(p.numel() for p in a.parameters()) < 1_000_000
    small = builtin.ARCHITECTURES["small"]
    h, i, n, v = small["hidden_size"], small["intermediate_size"], small["num_hidden_layers"], 261
    assert n * (4 * h * h + 3 * h * i) + v * h >= 50_000_000  # the memory benchmark needs >= ~50M parameters


def test_builtin_materialize_caches(tmp_path: Path) -> None:
    path = builtin.materialize("tiny", tmp_path)
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    assert builtin.materialize("tiny", tmp_path) == path
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def _two_builders(root: Path, monkeypatch: pytest.MonkeyPatch, rename_fails: str | None = None
                  ) -> tuple[dict[str, object], list[str]]:
    """builtin.materialize("tiny") in two threads, both past the cache check and building at once (a barrier at the
    model-building boundary; the models are built one at a time, torch's RNG being global). `rename_fails`: that
    thread's rename raises OSError(EACCES) for a reason of its own, and the other thread renames only once that
    thread's call has returned (or raised). Returns
    {thread: (path, finished when returned) or the exception} and the threads whose rename succeeded."""
    both_built = threading.Barrier(2, timeout=60)
    one_at_a_time = threading.Lock()
    returned = {name: threading.Event() for name in ("job-a", "job-b")}
    renamed: list[str] = []
    real_build, real_rename = builtin.build_model, Path.rename

    def build(name: str, **overrides: object) -> object:
        with one_at_a_time:
            model = real_build(name, **overrides)
        both_built.wait()
        return model

    def rename(self: Path, target: Path) -> Path:
        me = threading.current_thread().name
        if rename_fails is not None and me == rename_fails:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        if rename_fails is not None:
            assert returned[rename_fails].wait(60)
        out = real_rename(self, target)
        renamed.append(me)
        return out

    monkeypatch.setattr(builtin, "build_model", build)
    monkeypatch.setattr(Path, "rename", rename)
    results: dict[str, object] = {}

    def job(name: str) -> None:
        try:
            path = builtin.materialize("tiny", root)
            # what the caller would load now, looked at before the other thread can change it
            results[name] = (path, (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
                             and (path / "model.safetensors").is_file())
        except BaseException as exc:  # noqa: BLE001  (shown by the assertions)
            results[name] = exc
        finally:
            returned[name].set()

    threads = [threading.Thread(target=job, args=(name,), name=name) for name in ("job-a", "job-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results, renamed


def test_two_builders_of_one_builtin_at_once_share_the_winners_copy(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-xdist workers, or two jobs on a shared cache (a PVC), both building builtin://tiny
    results, renamed = _two_builders(tmp_path, monkeypatch)
    target = tmp_path / "builtin" / f"tiny-{builtin.VERSION}"
    assert results == {"job-a": (target, True), "job-b": (target, True)}, results
    assert len(renamed) == 1, renamed  # one rename into place; the loser's failed and it took the winner's folder
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no staging folder left
    assert json.loads((target / "config.json").read_text())["vocab_size"] == 256 + len(builtin.SPECIAL_TOKENS)


def test_a_builder_whose_rename_fails_for_itself_names_the_folder(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # job-b's rename fails (EACCES) and job-a's lands only after job-b's call has ended: nothing finished was in
    # place, so job-b must not return the (missing) folder for its caller to load
    results, renamed = _two_builders(tmp_path, monkeypatch, rename_fails="job-b")
    target = tmp_path / "builtin" / f"tiny-{builtin.VERSION}"
    assert results["job-a"] == (target, True) and renamed == ["job-a"], results
    error = results["job-b"]
    assert isinstance(error, UpstreamError), results
    assert str(target) in str(error) and "Permission denied" in str(error)
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_a_leftover_builtin_folder_in_the_way_is_named_not_returned(tmp_path: Path) -> None:
    target = tmp_path / "builtin" / f"tiny-{builtin.VERSION}"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # half of a copy: no tokenizer.json, which is saved last
    with pytest.raises(UpstreamError, match=f"{target}.*delete it"):
        builtin.materialize("tiny", tmp_path)
    assert [p.name for p in target.parent.iterdir()] == [target.name] and (target / "config.json").read_text() == "{}"


def test_resolve_file_pvc_hub_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m").mkdir()
    assert storage.resolve("file://m", base_dir=tmp_path, cache_dir=tmp_path) == str(tmp_path / "m")
    assert storage.resolve(f"file://{tmp_path}/m", base_dir=Path("/"), cache_dir=tmp_path) == str(tmp_path / "m")
    assert storage.resolve("./m", base_dir=tmp_path, cache_dir=tmp_path) == str(tmp_path / "m")
    monkeypatch.setenv("ALIGN_PVC_ROOT", str(tmp_path))
    assert storage.resolve("pvc://m", base_dir=Path("/"), cache_dir=tmp_path) == str(tmp_path / "m")
    with pytest.raises(UpstreamError, match="does not exist"):
        storage.resolve("pvc://claim/missing", base_dir=Path("/"), cache_dir=tmp_path)
    assert storage.resolve("Qwen/Qwen2.5-0.5B", base_dir=tmp_path, cache_dir=tmp_path) == "Qwen/Qwen2.5-0.5B"
    assert storage.resolve("hf://org/name", base_dir=tmp_path, cache_dir=tmp_path) == "org/name"
    monkeypatch.setenv("ALIGN_RESOLVED_URIS", json.dumps({"job://sft": "pvc://m"}))
    assert storage.resolve("job://sft", base_dir=Path("/"), cache_dir=tmp_path) == str(tmp_path / "m")
    with pytest.raises(UpstreamError, match="not resolved"):
        storage.resolve("job://other", base_dir=Path("/"), cache_dir=tmp_path)


def test_pvc_root_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGN_PVC_ROOT", raising=False)
    assert storage.pvc_path("pvc://claim/a/b") == Path("/mnt/pvc/claim/a/b")


def test_upload_file_target_is_atomic_replace(tmp_path: Path) -> None:
    src = tmp_path / "final"
    src.mkdir()
    (src / "adapter_model.safetensors").write_bytes(b"x")
    uri = storage.upload(src, f"file://{tmp_path}/out", base_dir=tmp_path, name="adapter")
    assert uri == f"file://{tmp_path}/out/adapter"
    (src / "README.md").write_text("card")
    storage.upload(src, f"file://{tmp_path}/out", base_dir=tmp_path, name="adapter")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["adapter"]
    assert (tmp_path / "out" / "adapter" / "README.md").read_text() == "card"


def test_hub_model_gets_token_and_revision_from_env_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers
    from align_trainer.models import Models
    calls: list[tuple[str, dict]] = []

    class Fake:
        def parameters(self):  # type: ignore[no-untyped-def]
            return iter(())

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda name, **kw: calls.append((name, kw)) or Fake())
    monkeypatch.setenv("HF_TOKEN", "hf_secret_from_secret_ref")
    model_spec = ModelSpec.model_validate({"base": "org/model", "revision": "v1"})
    device = choose_device(model_spec, Hyperparameters(), gpus=0, cuda=False, bf16_supported=False)
    Models(model_spec, device, base_dir=tmp_path, cache_dir=tmp_path).base()
    name, kwargs = calls[0]
    assert name == "org/model" and kwargs["token"] == "hf_secret_from_secret_ref" and kwargs["revision"] == "v1"
    assert "quantization_config" not in kwargs
