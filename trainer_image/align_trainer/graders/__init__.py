"""OpenAI-compatible graders (plus `reward_model`) as reward functions for the trainer.

    grader = build(spec.grader, context=ctx)                   # fails early (GraderUnavailable) if it cannot run
    results = grader.grade_batch(items, answers)               # one GradeResult per (dataset row, answer text)
    check_available(spec.grader)                               # raise GraderUnavailable (a ValueError) naming
                                                               # what this environment lacks (data, model, ...)

Grader types: string_check, text_similarity, python (in the grader jail), score_model / label_model (judges),
reward_model, multi. See docs/graders.md.
"""

from __future__ import annotations

from typing import Any, Sequence

from align_api.graders import (LabelModelGrader, MultiGrader, PythonGrader, RewardModelGrader, ScoreModelGrader,
                               StringCheckGrader, TextSimilarityGrader, iter_graders)

from .core import ERROR_FLAGS, GradeResult, GraderUnavailable, Scorer
from .templates import make_sample

__all__ = ["ERROR_FLAGS", "GradeResult", "Grader", "GraderUnavailable", "Scorer", "build", "build_scorer",
           "check_available", "make_sample", "problems", "run_grader"]


def build_scorer(spec: Any, *, context: Any = None, judge: Any = None, reward_model: Any = None) -> Scorer:
    """The scorer tree for a grader spec. `judge`: a JudgeBackend for every score/label_model grader (tests,
    simulated feedback); `reward_model`: a (model, tokenizer) already in memory for reward_model graders."""
    if isinstance(spec, StringCheckGrader):
        from .similarity import StringCheckScorer
        return StringCheckScorer(spec)
    if isinstance(spec, TextSimilarityGrader):
        from .similarity import TextSimilarityScorer
        return TextSimilarityScorer(spec, context=context)
    if isinstance(spec, PythonGrader):
        from .python_grader import PythonScorer
        return PythonScorer(spec)
    if isinstance(spec, ScoreModelGrader):
        from .judges import ScoreModelScorer
        return ScoreModelScorer(spec, context=context, backend=judge)
    if isinstance(spec, LabelModelGrader):
        from .judges import LabelModelScorer
        return LabelModelScorer(spec, context=context, backend=judge)
    if isinstance(spec, RewardModelGrader):
        from .reward_model import RewardModelScorer
        model, tokenizer = reward_model if reward_model is not None else (None, None)
        return RewardModelScorer(spec, context=context, model=model, tokenizer=tokenizer)
    if isinstance(spec, MultiGrader):
        from .multi import MultiScorer
        children = {key: build_scorer(sub, context=context, judge=judge, reward_model=reward_model)
                    for key, sub in spec.graders.items()}
        return MultiScorer(spec, children)
    raise TypeError(f"not a grader spec: {type(spec).__name__}")


class Grader:
    """A built grader: grades answers (texts) for dataset rows (items)."""

    def __init__(self, spec: Any, scorer: Scorer):
        self.spec, self.scorer = spec, scorer
        self.name, self.type = scorer.name, scorer.type
        self.calls = self.errors = 0
        #: Set for training (graders.rewards.grader_reward): a failing grader stops the run (health.py).
        self.health: Any = None

    def grade_batch(self, items: Sequence[dict[str, Any]], answers: Sequence[str], *,
                    prompts: Sequence[Any] | None = None) -> list[GradeResult]:
        """One result per (item, answer). `prompts` (text or messages) reach only reward_model graders."""
        samples = [make_sample(a) for a in answers]
        if prompts is not None:
            for sample, prompt in zip(samples, prompts):
                sample["prompt"] = prompt
        results = self.scorer.grade_batch(samples, [dict(i) for i in items])
        self.calls += len(results)
        self.errors += sum(r.failed for r in results)
        if self.health is not None:  # GraderFailing when too many gradings failed; warns on no reward variance
            self.health.observe(self.name, results, items, answers, self.compared_with, prompts)
        return results

    def compared_with(self, item: dict[str, Any]) -> str:
        """What the grader compares an answer with, for messages: its rendered `reference` (string_check,
        text_similarity), else the item's fields other than the prompt."""
        from .templates import TemplateError, make_sample, render
        reference = getattr(self.spec, "reference", None)
        if isinstance(reference, str):
            try:
                return render(reference, make_sample(""), dict(item))
            except TemplateError:
                return reference
        return ", ".join(f"{k}={v}" for k, v in item.items() if k not in ("messages", "prompt"))

    def grade(self, item: dict[str, Any], answer: str) -> GradeResult:
        return self.grade_batch([item], [answer])[0]

    def close(self) -> None:
        self.scorer.close()


def build(spec: Any, *, context: Any = None, judge: Any = None, reward_model: Any = None) -> Grader:
    """Build a grader from its spec; raises GraderUnavailable when it cannot run here."""
    check_available(spec)
    return Grader(spec, build_scorer(spec, context=context, judge=judge, reward_model=reward_model))


def problems(spec: Any) -> list[str]:
    """What this environment lacks to run `spec` (empty when it can run). Cheap: loads no model."""
    out = []
    for sub in iter_graders(spec):
        if isinstance(sub, TextSimilarityGrader):
            if sub.evaluation_metric == "meteor":
                from .similarity import meteor_unavailable, wordnet_location
                if wordnet_location() is None:
                    out.append(f"grader {sub.name!r}: {meteor_unavailable()}")
            elif sub.evaluation_metric == "cosine":
                from .embeddings import cosine_unavailable
                problem = cosine_unavailable()
                if problem:
                    out.append(f"grader {sub.name!r}: {problem}")
        elif isinstance(sub, (ScoreModelGrader, LabelModelGrader)) and sub.endpoint is None:
            from .judges import is_api_model_name, judge_unavailable
            if is_api_model_name(sub.model):
                out.append(judge_unavailable(sub))
    return out


def check_available(spec: Any) -> None:
    """Raise GraderUnavailable (a ValueError) listing every problem `problems(spec)` finds."""
    found = problems(spec)
    if found:
        raise GraderUnavailable("; ".join(found))


def run_grader(spec: Any, item: dict[str, Any], model_sample: str, **build_kwargs: Any) -> dict[str, Any]:
    """OpenAI's grader run endpoint, locally: {reward, sub_rewards, metadata{errors, ...}}."""
    grader = build(spec, **build_kwargs)
    try:
        return grader.grade(item, model_sample).to_dict()
    finally:
        grader.close()
