"""Embeddings for text_similarity's `cosine` metric.

OpenAI computes cosine with text-embedding-3-large, which cannot run here. The trainer uses a local
embedding model instead, named by the environment variable ALIGN_EMBEDDING_MODEL (a model URI:
file:///models/all-MiniLM-L6-v2, pvc://models/e5, a hub id in the image cache, builtin://tiny for tests).
Texts are embedded as the attention-masked mean of the last hidden states. Without that variable a
cosine grader is rejected when the grader is built (and by `check_available`), never mid-run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .core import GraderUnavailable

ENV_EMBEDDING_MODEL = "ALIGN_EMBEDDING_MODEL"


def cosine_unavailable() -> str | None:
    if os.environ.get(ENV_EMBEDDING_MODEL):
        return None
    return ("text_similarity metric 'cosine' needs an embedding model (OpenAI's text-embedding-3-large is not "
            f"available here): set {ENV_EMBEDDING_MODEL} in the trainer image to a local embedding model URI "
            "(file://, pvc://, a cached hub id), or use fuzzy_match / rouge_l / bleu")


def _resolve(uri: str, context: Any) -> str:
    models = getattr(context, "models", None)
    if models is not None and hasattr(models, "resolve"):
        return str(models.resolve(uri))
    if uri.startswith("builtin://"):
        from align_trainer import builtin
        return str(builtin.materialize(uri[len("builtin://"):]))
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return uri


def load_pretrained(uri: str, context: Any, model_cls: Any, what: str) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode) for a grader's local model URI; a pad token when the tokenizer has none.
    A model that cannot be loaded is GraderUnavailable (a configuration error before training)."""
    from transformers import AutoTokenizer
    path = _resolve(uri, context)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = model_cls.from_pretrained(path).eval()
    except OSError as exc:
        raise GraderUnavailable(f"cannot load {what} {uri}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


class LocalEmbedder:
    """Mean-pooled hidden states of a transformers model, on CPU (embedding a few answers per step)."""

    def __init__(self, uri: str, *, context: Any = None, batch_size: int = 16):
        from transformers import AutoModel
        path = _resolve(uri, context)
        if not Path(path).exists() and "://" in uri:
            raise GraderUnavailable(f"embedding model {uri} is not available at {path}")
        self.tokenizer, self.model = load_pretrained(uri, context, AutoModel, "embedding model")
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Any:
        import torch
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(list(texts[i:i + self.batch_size]), return_tensors="pt", padding=True,
                                       truncation=True, max_length=512)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
        return torch.cat(out)

    def cosine(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        import torch
        vectors = self.embed([t for pair in pairs for t in pair])
        a, b = vectors[0::2], vectors[1::2]
        return torch.nn.functional.cosine_similarity(a, b, dim=-1).tolist()


def build_embedder(spec: Any, *, context: Any = None) -> LocalEmbedder:
    problem = cosine_unavailable()
    if problem:
        raise GraderUnavailable(problem)
    return LocalEmbedder(os.environ[ENV_EMBEDDING_MODEL], context=context)
