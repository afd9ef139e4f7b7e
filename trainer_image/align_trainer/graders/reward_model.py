"""`reward_model` graders: a sequence-classification model scores (prompt, answer); logit 0 is the reward.

The model URI may be a full sequence-classification checkpoint or a PEFT adapter written by our `reward`
algorithm (its adapter_config.json names the base; the score head travels in modules_to_save). The input
text is built exactly as TRL's RewardTrainer saw it during training (align_trainer.inference).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

from align_api.graders import RewardModelGrader

from .core import GradeResult, GraderUnavailable, Scorer


def load_reward_model(uri: str, *, context: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a reward model URI, in eval mode on CPU/float32 unless the context says otherwise."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .embeddings import _resolve
    path = Path(_resolve(uri, context))
    if not path.exists():
        raise GraderUnavailable(f"reward model {uri} is not available (resolved to {path})")
    try:
        if (path / "adapter_config.json").is_file():
            from align_trainer.models import load_trained
            model = load_trained(path, sequence_classification=True)
            tokenizer_dir = path if (path / "tokenizer_config.json").is_file() else Path(model.peft_config["default"].base_model_name_or_path)
            if not tokenizer_dir.exists():
                tokenizer_dir = Path(_resolve(str(model.peft_config["default"].base_model_name_or_path), context))
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
            tokenizer_dir = path
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise GraderUnavailable(f"cannot load reward model {uri}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


class RewardModelScorer(Scorer):
    type = "reward_model"

    def __init__(self, spec: RewardModelGrader, *, context: Any = None, model: Any = None, tokenizer: Any = None):
        self.spec, self.name = spec, spec.name
        if model is None:
            model, tokenizer = load_reward_model(spec.model, context=context)
        self.model, self.tokenizer = model, tokenizer

    def grade_batch(self, samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]) -> list[GradeResult]:
        from align_trainer.inference import reward_model_input, reward_model_scores
        start = time.monotonic()
        texts = []
        for sample, item in zip(samples, items):
            prompt = sample.get("prompt", item.get("prompt", ""))
            completion = sample.get("completion", sample["output_text"])
            texts.append(reward_model_input(prompt, completion, self.tokenizer))
        scores = reward_model_scores(self.model, self.tokenizer, texts, max_length=self.spec.max_length)
        if self.spec.normalize and len(scores) > 1:
            finite = [s for s in scores if math.isfinite(s)]
            mean = sum(finite) / max(1, len(finite))
            std = math.sqrt(sum((s - mean) ** 2 for s in finite) / max(1, len(finite))) or 1.0
            scores = [(s - mean) / std for s in scores]
        results = [GradeResult(s) if math.isfinite(s) else
                   GradeResult(0.0, errors={"other_error": True}, details={"error": f"reward model gave {s}"})
                   for s in scores]
        self._stamp(results, start)
        return results
