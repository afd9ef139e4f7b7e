"""`string_check` and `text_similarity`: rule-based graders, computed as OpenAI documents them.

text_similarity metrics (all in [0, 1]):
  fuzzy_match   rapidfuzz `fuzz.WRatio` with `utils.default_process` (lower-case, strip punctuation) / 100
  bleu          sacrebleu sentence BLEU (effective order, so short answers are not zeroed) / 100
  gleu          NLTK `sentence_gleu` over whitespace tokens
  meteor        NLTK `meteor_score` over whitespace tokens; needs the WordNet corpus on disk
  rouge_1..5,l  rouge-score F-measure with the Porter stemmer
  cosine        cosine of mean-pooled embeddings from `embedding_model` (a local model or an endpoint)
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from align_api.graders import StringCheckGrader, TextSimilarityGrader

from .core import GradeResult, GraderUnavailable, Scorer
from .templates import TemplateError, render

#: Where METEOR's WordNet may be, besides NLTK's data path: a directory in NLTK's `corpora/wordnet` layout
#: (the WordNet 3.0 database files plus NLTK's `lexnames`).
ENV_WORDNET_DIR = "ALIGN_WORDNET_DIR"


def string_check(operation: str, text: str, reference: str) -> float:
    """OpenAI's string_check: eq / ne exact and case-sensitive; like = contains; ilike = contains, any case."""
    if operation == "eq":
        return float(text == reference)
    if operation == "ne":
        return float(text != reference)
    if operation == "like":
        return float(reference in text)
    if operation == "ilike":
        return float(reference.lower() in text.lower())
    raise ValueError(f"unknown string_check operation {operation!r}")


def template_failure(exc: TemplateError) -> GradeResult:
    flag = "sample_parse_error" if exc.sample_parse else "invalid_variable_error"
    return GradeResult(0.0, errors={flag: True}, details={"error": str(exc)})


class StringCheckScorer(Scorer):
    type = "string_check"

    def __init__(self, spec: StringCheckGrader):
        self.spec, self.name = spec, spec.name

    def grade_one(self, sample: dict[str, Any], item: dict[str, Any]) -> GradeResult:
        try:
            text, reference = render(self.spec.input, sample, item), render(self.spec.reference, sample, item)
        except TemplateError as exc:
            return template_failure(exc)
        return GradeResult(string_check(self.spec.operation, text, reference))


# --- text similarity -------------------------------------------------------------------------------------
def fuzzy_match(text: str, reference: str) -> float:
    from rapidfuzz import fuzz, utils
    return fuzz.WRatio(text, reference, processor=utils.default_process) / 100.0


def bleu(text: str, reference: str) -> float:
    return _bleu_metric().sentence_score(text, [reference]).score / 100.0


@lru_cache(maxsize=1)
def _bleu_metric() -> Any:
    from sacrebleu.metrics import BLEU
    return BLEU(effective_order=True)


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu
    return float(sentence_gleu([reference.split()], text.split()))


def meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score
    return float(meteor_score([reference.split()], text.split(), wordnet=_wordnet()))


def rouge(kind: str) -> Callable[[str, str], float]:
    key = "rougeL" if kind == "l" else f"rouge{kind}"

    def score(text: str, reference: str) -> float:
        return float(_rouge_scorer(key).score(reference, text)[key].fmeasure)
    return score


@lru_cache(maxsize=8)
def _rouge_scorer(key: str) -> Any:
    from rouge_score import rouge_scorer
    return rouge_scorer.RougeScorer([key], use_stemmer=True)


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match, "bleu": bleu, "gleu": gleu, "meteor": meteor,
    **{f"rouge_{k}": rouge(k) for k in ("1", "2", "3", "4", "5", "l")},
}


def wordnet_location() -> str | None:
    """A directory (or NLTK data entry) with a WordNet that NLTK can read, or None."""
    explicit = os.environ.get(ENV_WORDNET_DIR)
    if explicit and all((Path(explicit) / f).is_file() for f in ("data.noun", "index.noun", "lexnames")):
        return explicit
    try:
        import nltk
        for name in ("corpora/wordnet", "corpora/wordnet.zip"):
            try:
                nltk.data.find(name)
                return "nltk:" + name
            except LookupError:
                continue
    except ImportError:
        pass
    return None


@lru_cache(maxsize=1)
def _wordnet() -> Any:
    location = wordnet_location()
    if location is None:
        raise GraderUnavailable(meteor_unavailable())
    try:
        if location.startswith("nltk:"):
            from nltk.corpus import wordnet
            wordnet.ensure_loaded()
            return wordnet
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
        if location not in nltk.data.path:  # NLTK only reads corpora under its data path (nltk.pathsec)
            nltk.data.path.append(location)
        return WordNetCorpusReader(location, None)
    except (OSError, LookupError, ValueError) as exc:
        raise GraderUnavailable(f"{meteor_unavailable()} (reading {location}: {exc})") from None


def meteor_unavailable() -> str:
    return ("text_similarity metric 'meteor' needs the WordNet corpus, which is not installed in this image and "
            "cannot be downloaded at run time: bake NLTK's `corpora/wordnet` into the image (an NLTK data path, or "
            f"a directory named by {ENV_WORDNET_DIR}), or use another metric (rouge_l, bleu, fuzzy_match)")


class TextSimilarityScorer(Scorer):
    type = "text_similarity"

    def __init__(self, spec: TextSimilarityGrader, *, context: Any = None):
        self.spec, self.name, self.pass_threshold = spec, spec.name, spec.pass_threshold
        metric = spec.evaluation_metric
        if metric == "cosine":
            from .embeddings import build_embedder
            self._embed = build_embedder(spec, context=context)
        elif metric == "meteor":
            _wordnet()  # fail at build time, not mid-run
        self._metric = METRICS.get(metric)

    def grade_batch(self, samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]) -> list[GradeResult]:
        if self.spec.evaluation_metric != "cosine":
            return super().grade_batch(samples, items)
        import time
        start = time.monotonic()
        pairs, results = [], []
        for sample, item in zip(samples, items):
            try:
                pairs.append((render(self.spec.input, sample, item), render(self.spec.reference, sample, item)))
                results.append(None)
            except TemplateError as exc:
                results.append(template_failure(exc))
        scores = iter(self._embed.cosine(pairs) if pairs else [])
        out = [r if r is not None else GradeResult(max(0.0, min(1.0, next(scores)))) for r in results]
        self._stamp(out, start)
        return out

    def grade_one(self, sample: dict[str, Any], item: dict[str, Any]) -> GradeResult:
        try:
            text, reference = render(self.spec.input, sample, item), render(self.spec.reference, sample, item)
        except TemplateError as exc:
            return template_failure(exc)
        assert self._metric is not None
        return GradeResult(max(0.0, min(1.0, self._metric(text, reference))))
