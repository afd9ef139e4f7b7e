"""OpenAI-compatible grader definitions (snake_case, verbatim), plus `reward_model`.

A grader JSON from OpenAI's reinforcement fine-tuning API can be pasted into `spec.grader` unchanged.
"""

from __future__ import annotations

import ast
import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from . import formula
from .common import ArtifactURI, OpenAIModel, SecretKeyRef

# {{ item.x }}, {{sample.output_text}}, {{sample.output_json.a.b}}, {{sample.output_tools}}
_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TEMPLATE_PATH = re.compile(r"^(item(\.[A-Za-z_][\w-]*|\[\d+\])+|sample\.output_text|sample\.output_json(\.[A-Za-z_][\w-]*|\[\d+\])*"
                            r"|sample\.output_tools|sample\.choices)$")


def check_template(text: str) -> str:
    """Every `{{...}}` must name item.<field> or sample.output_text / output_json[.x] / output_tools."""
    if text.count("{{") != text.count("}}"):
        raise ValueError("unbalanced '{{' / '}}' in template")
    for match in _TEMPLATE.finditer(text):
        path = match.group(1)
        if not _TEMPLATE_PATH.match(path):
            raise ValueError(f"template variable {{{{{path}}}}} is not supported; use {{{{item.<field>}}}}, "
                             "{{sample.output_text}} or {{sample.output_json.<field>}}")
    return text


class Message(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant"] = Field(description="Chat role of this message.")
    content: str = Field(description="Message text; may contain {{item.x}} and {{sample.output_text}} templates.")
    type: Literal["message"] | None = Field(default=None, description="Always 'message' when given (OpenAI's input item type).")

    _content = field_validator("content")(lambda cls, v: check_template(v))


class SamplingParams(OpenAIModel):
    temperature: float | None = Field(default=None, ge=0, le=2, description="Judge sampling temperature.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="Judge nucleus sampling.")
    seed: int | None = Field(default=None, description="Judge sampling seed.")
    max_completions_tokens: int | None = Field(default=None, ge=1, le=32768, description="Judge output token cap.")
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = Field(
        default=None, description="Reasoning effort for reasoning judges (passed through to the endpoint).")


class JudgeEndpoint(OpenAIModel):
    """Where a model judge runs: an OpenAI-compatible HTTP endpoint (e.g. vLLM). Extension to OpenAI's schema."""

    base_url: str = Field(pattern=r"^https?://", description="Base URL of an OpenAI-compatible API, e.g. http://vllm:8000/v1.")
    api_key: SecretKeyRef | None = Field(default=None, description="Secret holding the endpoint's API key.")
    timeout_seconds: float = Field(default=60, gt=0, le=600, description="Per-request timeout.")


class _GraderBase(OpenAIModel):
    name: str = Field(default="grader", min_length=1, max_length=128, description="Grader name (used in metrics and multi formulas).")


class StringCheckGrader(_GraderBase):
    """1.0 when `operation(input, reference)` holds, else 0.0."""

    type: Literal["string_check"] = Field(description="Grader type.")
    input: str = Field(description="Template rendered from the sample, e.g. {{sample.output_text}}.")
    reference: str = Field(description="Template rendered from the item, e.g. {{item.answer}}.")
    operation: Literal["eq", "ne", "like", "ilike"] = Field(
        description="eq: equal; ne: not equal; like: input contains reference; ilike: case-insensitive contains.")

    _templates = field_validator("input", "reference")(lambda cls, v: check_template(v))


SIMILARITY_METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", "cosine",
                      "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l")


class TextSimilarityGrader(_GraderBase):
    """A similarity score in [0, 1] between input and reference."""

    type: Literal["text_similarity"] = Field(description="Grader type.")
    input: str = Field(description="Template for the text to score.")
    reference: str = Field(description="Template for the reference text.")
    evaluation_metric: Literal[SIMILARITY_METRICS] = Field(description="Similarity metric.")  # type: ignore[valid-type]
    pass_threshold: float | None = Field(default=None, ge=0, le=1, description="Score at or above which the sample passes.")

    _templates = field_validator("input", "reference")(lambda cls, v: check_template(v))


class PythonGrader(_GraderBase):
    """Untrusted Python: `def grade(sample, item) -> float`, run in the grader jail (a confined worker process)."""

    type: Literal["python"] = Field(description="Grader type.")
    source: str = Field(min_length=1, max_length=256_000, description="Python source defining grade(sample, item).")
    image_tag: str | None = Field(default=None, description="Accepted for OpenAI compatibility; the trainer image's Python is used.")
    pass_threshold: float | None = Field(default=None, description="Score at or above which the sample passes.")

    @field_validator("source")
    @classmethod
    def _defines_grade(cls, source: str) -> str:
        try:
            tree = ast.parse(source, filename="<grader>")
        except SyntaxError as exc:
            raise ValueError(f"source does not compile: {exc.msg} (line {exc.lineno})") from None
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == "grade":
                params = [a.arg for a in node.args.posonlyargs + node.args.args]
                if len(params) < 2 and not node.args.vararg:
                    raise ValueError("grade must take two arguments: grade(sample, item)")
                return source
        raise ValueError("source must define a top-level function grade(sample, item) -> float")


class ScoreModelGrader(_GraderBase):
    """A model judge that returns a number in `range`."""

    type: Literal["score_model"] = Field(description="Grader type.")
    model: str = Field(min_length=1, description="Judge model: a model URI (local) or a model name served by `endpoint`.")
    input: list[Message] = Field(min_length=1, description="Judge prompt messages (templated).")
    range: tuple[float, float] = Field(default=(0.0, 1.0), description="[min, max] of the judge's score.")
    sampling_params: SamplingParams | None = Field(default=None, description="Judge sampling parameters.")
    pass_threshold: float | None = Field(default=None, description="Score at or above which the sample passes.")
    endpoint: JudgeEndpoint | None = Field(default=None, description="OpenAI-compatible endpoint; local model when omitted.")

    @field_validator("range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] < value[1]:
            raise ValueError("range must be [min, max] with min < max")
        return value


class LabelModelGrader(_GraderBase):
    """A model judge that picks one of `labels`; 1.0 if it is in `passing_labels`."""

    type: Literal["label_model"] = Field(description="Grader type.")
    model: str = Field(min_length=1, description="Judge model: a model URI (local) or a model name served by `endpoint`.")
    input: list[Message] = Field(min_length=1, description="Judge prompt messages (templated).")
    labels: list[str] = Field(min_length=2, description="Labels the judge may answer with.")
    passing_labels: list[str] = Field(min_length=1, description="Labels that count as a pass (reward 1).")
    sampling_params: SamplingParams | None = Field(default=None, description="Judge sampling parameters.")
    endpoint: JudgeEndpoint | None = Field(default=None, description="OpenAI-compatible endpoint; local model when omitted.")

    @model_validator(mode="after")
    def _passing_subset(self) -> "LabelModelGrader":
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"[passing_labels] {unknown} are not in labels {self.labels}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("[labels] must be unique")
        return self


class RewardModelGrader(_GraderBase):
    """A sequence-classification reward model (e.g. one trained by `algorithm: reward`). Extension to OpenAI's schema."""

    type: Literal["reward_model"] = Field(description="Grader type.")
    model: ArtifactURI = Field(description="Reward model URI, or job://<name> of a reward AlignmentJob.")
    normalize: bool = Field(default=False, description="Standardise rewards per batch (zero mean, unit variance).")
    max_length: int | None = Field(
        default=None, ge=1, le=1_048_576,
        description="Tokens scored per text (prompt + answer as the reward model was trained on): a longer text is cut "
                    "from the left, so the answer's end, where the model reads its score, is kept. Default: the whole text.")


class MultiGrader(_GraderBase):
    """Named sub-graders combined by a safe arithmetic formula."""

    type: Literal["multi"] = Field(description="Grader type.")
    graders: dict[str, "Grader"] = Field(min_length=1, description="Sub-graders by name (names are formula variables).")
    calculate_output: str = Field(description="Arithmetic over sub-grader names, e.g. '0.5 * accuracy + 0.5 * style'.")

    @model_validator(mode="after")
    def _formula(self) -> "MultiGrader":
        for key in self.graders:
            if not key.isidentifier():
                raise ValueError(f"[graders.{key}] grader name {key!r} must be an identifier to be used in calculate_output")
        try:
            formula.parse(self.calculate_output, set(self.graders))
        except formula.FormulaError as exc:
            raise ValueError(f"[calculate_output] {exc}") from None
        return self


Grader = Annotated[
    Union[StringCheckGrader, TextSimilarityGrader, PythonGrader, ScoreModelGrader, LabelModelGrader,
          RewardModelGrader, MultiGrader],
    Field(discriminator="type"),
]
GRADER_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "reward_model", "multi")
MultiGrader.model_rebuild()


def iter_graders(grader: Any) -> list[Any]:
    """The grader and all its nested sub-graders, depth first."""
    out = [grader]
    if isinstance(grader, MultiGrader):
        for sub in grader.graders.values():
            out.extend(iter_graders(sub))
    return out
