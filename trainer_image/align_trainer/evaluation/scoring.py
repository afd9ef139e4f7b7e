"""Score answers: with a grader from spec (via align_trainer.graders), or with a reward model in memory.

Both give one `Score` per answer; a grading failure is a NaN reward (left out of win rates and means, and
counted as `unscored` in the report), never an exception that loses the whole evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from ..inference import reward_model_input, reward_model_scores
from .generate import prompt_text


@dataclass(frozen=True)
class Score:
    reward: float
    label: str | None = None  #: the judge's label (label_model graders), for refusal-like rates
    error: str | None = None


class AnswerScorer(Protocol):
    def score(self, items: Sequence[dict[str, Any]], answers: Sequence[str]) -> list[Score]:
        """One score per (item, answer); `item` is the dataset row (prompt and extra columns)."""


def completion_text(completion: Any) -> str:
    """A chosen/rejected/completion value as plain text (conversational: the assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))


class LoadedRewardModelScorer:
    """Scores (prompt, answer) with a sequence-classification model already in memory (an AnswerScorer; the
    reward_model *grader* of a spec is graders.reward_model.RewardModelScorer)."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8, max_length: int | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, items: Sequence[dict[str, Any]], answers: Sequence[Any]) -> list[Score]:
        texts = [reward_model_input(item["prompt"], answer, self.tokenizer) for item, answer in zip(items, answers)]
        rewards = reward_model_scores(self.model, self.tokenizer, texts, batch_size=self.batch_size,
                                      max_length=self.max_length)
        return [Score(r) for r in rewards]


class GraderScorer:
    """Scores answers with an OpenAI-compatible grader (or reward_model grader) from align_trainer.graders."""

    def __init__(self, grader_spec: Any, *, context: Any = None) -> None:
        from align_trainer import graders
        self._graders = graders
        self.spec = grader_spec
        self.grader = graders.build(grader_spec, context=context)

    def score(self, items: Sequence[dict[str, Any]], answers: Sequence[str]) -> list[Score]:
        # prompts reach only reward_model graders (they score prompt + answer); a conversational prompt is also
        # {{item.messages}}, as in training (graders.rewards.with_messages): one grader, one item namespace
        from align_trainer.graders.rewards import with_messages
        results = self.grader.grade_batch([with_messages(dict(item), item.get("prompt")) for item in items],
                                          list(answers), prompts=[item.get("prompt") for item in items])
        scores = []
        for result in results:
            # In training a failed grading is reward 0; here it is "unscored" (NaN), so that a crashing
            # grader shows up as missing data rather than as ties or losses.
            failed = result.failed or result.reward is None
            error = ", ".join(k for k, v in result.errors.items() if v) if failed else None
            scores.append(Score(math.nan if failed else float(result.reward), result.label, error))
        return scores

    def close(self) -> None:
        close = getattr(self.grader, "close", None)
        if callable(close):
            close()


def token_length(tokenizer: Any, text: Any) -> int:
    return len(tokenizer(completion_text(text), add_special_tokens=False)["input_ids"])


def prompt_for_display(prompt: Any, tokenizer: Any) -> str:
    """The prompt as a reader should see it in the report (conversations as rendered for the model)."""
    try:
        return prompt_text(prompt, tokenizer)
    except (TypeError, ValueError):
        return str(prompt)
