"""`score_model` and `label_model`: a model judge reads templated messages and answers with a score/label.

Where the judge runs:
  * `endpoint` set: an OpenAI-compatible chat-completions server (vLLM, TGI, OpenAI itself), API key from
    the environment variable ALIGN_JUDGE_API_KEY (the operator fills it from spec.secrets.judgeApiKey);
  * otherwise `model` is a model URI loaded locally with transformers (builtin://, file://, pvc://, s3://,
    a hub id), sharing the trainer's URI resolution.
Algorithms and tests can also pass any `JudgeBackend` (a callable from message lists to texts).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol, Sequence

from align_api.constants import ENV_JUDGE_API_KEY
from align_api.graders import LabelModelGrader, SamplingParams, ScoreModelGrader

from .core import GradeResult, GraderUnavailable, Scorer
from .similarity import template_failure
from .templates import TemplateError, render

Messages = list[dict[str, str]]
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_KEYED_NUMBER = re.compile(r"(?:score|result|rating|grade)\W{0,5}([-+]?(?:\d+\.\d*|\.\d+|\d+))", re.I)


class JudgeError(Exception):
    """The judge could not answer (server error); `refusal` when it declined."""

    def __init__(self, message: str, *, refusal: bool = False):
        super().__init__(message)
        self.refusal = refusal


class JudgeBackend(Protocol):
    def __call__(self, conversations: Sequence[Messages], sampling: SamplingParams | None) -> list[str | JudgeError]:
        """One answer text (or a JudgeError) per conversation."""


class FunctionJudge:
    """A judge from a plain function `messages -> text` (tests, simulated AI feedback)."""

    def __init__(self, fn: Callable[[Messages], str]):
        self.fn = fn

    def __call__(self, conversations: Sequence[Messages], sampling: SamplingParams | None) -> list[str | JudgeError]:
        out: list[str | JudgeError] = []
        for messages in conversations:
            try:
                out.append(self.fn(messages))
            except Exception as exc:  # a broken judge is a recorded server error, not a crash
                out.append(JudgeError(f"{type(exc).__name__}: {exc}"))
        return out


class HttpJudge:
    """OpenAI-compatible `POST {base_url}/chat/completions`, a few requests in flight, bounded retries."""

    def __init__(self, base_url: str, model: str, *, timeout: float = 60.0, api_key: str | None = None,
                 concurrency: int = 8, retries: int = 2):
        import httpx
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)
        self.model, self.concurrency, self.retries = model, concurrency, retries

    def _one(self, messages: Messages, sampling: SamplingParams | None) -> str | JudgeError:
        import httpx
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if sampling is not None:
            params = sampling.to_dict()
            if "max_completions_tokens" in params:
                body["max_tokens"] = params.pop("max_completions_tokens")
            body.update(params)
        last = ""
        for attempt in range(self.retries + 1):
            try:
                resp = self.client.post("/chat/completions", json=body)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 300:
                    try:
                        message = resp.json()["choices"][0]["message"]
                    except (ValueError, KeyError, IndexError, TypeError):
                        return JudgeError(f"malformed judge response: {resp.text[:200]}")
                    if message.get("refusal"):
                        return JudgeError(str(message["refusal"])[:500], refusal=True)
                    return str(message.get("content") or "")
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code < 500 and resp.status_code != 429:
                    break  # a client error does not get better by retrying
            time.sleep(min(2.0, 0.2 * 2 ** attempt))
        return JudgeError(last)

    def __call__(self, conversations: Sequence[Messages], sampling: SamplingParams | None) -> list[str | JudgeError]:
        with ThreadPoolExecutor(max_workers=max(1, min(self.concurrency, len(conversations)))) as pool:
            return list(pool.map(lambda m: self._one(m, sampling), conversations))

    def close(self) -> None:
        self.client.close()


class LocalJudge:
    """A causal LM loaded from a model URI, answering with the tokenizer's chat template."""

    def __init__(self, uri: str, *, context: Any = None, default_max_tokens: int = 32):
        from transformers import AutoModelForCausalLM

        from .embeddings import load_pretrained
        self.tokenizer, self.model = load_pretrained(uri, context, AutoModelForCausalLM, "judge model")
        if self.tokenizer.chat_template is None:
            from align_trainer import builtin
            self.tokenizer.chat_template = builtin.CHAT_TEMPLATE
        self.tokenizer.padding_side = "left"
        self.default_max_tokens = default_max_tokens

    def __call__(self, conversations: Sequence[Messages], sampling: SamplingParams | None) -> list[str | JudgeError]:
        import torch
        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in conversations]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        temperature = sampling.temperature if sampling and sampling.temperature is not None else 0.0
        kwargs: dict[str, Any] = {"max_new_tokens": (sampling.max_completions_tokens if sampling else None)
                                  or self.default_max_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=(sampling.top_p if sampling else None) or 1.0)
        else:
            kwargs.update(do_sample=False)
        if sampling and sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.no_grad():
            out = self.model.generate(**batch, **kwargs)
        new = out[:, batch["input_ids"].shape[1]:]
        return list(self.tokenizer.batch_decode(new, skip_special_tokens=True))


def is_api_model_name(model: str) -> bool:
    """`gpt-4o-2024-08-06`, `o3-mini`: a name only an endpoint can serve (no scheme, no org/ prefix, no path)."""
    return "://" not in model and "/" not in model and not model.startswith((".", "~"))


def build_backend(spec: ScoreModelGrader | LabelModelGrader, *, context: Any = None) -> JudgeBackend:
    if spec.endpoint is not None:
        key = os.environ.get(ENV_JUDGE_API_KEY)
        if spec.endpoint.api_key is not None and not key:
            raise GraderUnavailable(f"grader {spec.name!r}: endpoint.api_key is set but {ENV_JUDGE_API_KEY} is empty "
                                    "(the operator fills it from spec.secrets.judgeApiKey)")
        return HttpJudge(spec.endpoint.base_url, spec.model, timeout=spec.endpoint.timeout_seconds, api_key=key)
    if is_api_model_name(spec.model):
        raise GraderUnavailable(judge_unavailable(spec))
    return LocalJudge(spec.model, context=context)


def judge_unavailable(spec: Any) -> str:
    return (f"grader {spec.name!r}: judge model {spec.model!r} looks like a hosted model name and no endpoint is "
            "set: add endpoint: {base_url: http://<vllm>:8000/v1} (an OpenAI-compatible server) or use a local "
            "model URI (builtin://, file://, pvc://, s3://, org/name)")


def parse_score(text: str) -> float:
    """The judge's number: JSON {"result"|"score": x}, else a number after 'score:'/'result:', else the first."""
    stripped = text.strip()
    try:
        data = json.loads(stripped)
        if isinstance(data, dict):
            for key in ("result", "score", "rating", "grade"):
                if isinstance(data.get(key), (int, float)) and not isinstance(data.get(key), bool):
                    return float(data[key])
        elif isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
    except ValueError:
        pass
    match = _KEYED_NUMBER.search(stripped) or _NUMBER.search(stripped)
    if not match:
        raise ValueError(f"no score in judge answer {stripped[:200]!r}")
    return float(match.group(1) if match.re is _KEYED_NUMBER else match.group(0))


def parse_label(text: str, labels: Sequence[str]) -> str:
    """The judge's label: the whole answer (case/quotes/punctuation aside), JSON {"result"|"label"}, or the only
    label mentioned as a word."""
    stripped = text.strip()
    try:
        data = json.loads(stripped)
        if isinstance(data, dict):
            stripped = str(data.get("result", data.get("label", stripped)))
    except ValueError:
        pass
    norm = stripped.strip(" \t\n\"'`.:!").lower()
    by_lower = {label.lower(): label for label in labels}
    if norm in by_lower:
        return by_lower[norm]
    found = [label for label in labels if re.search(rf"(?<!\w){re.escape(label.lower())}(?!\w)", norm)]
    if len(found) == 1:
        return found[0]
    raise ValueError(f"judge answer {stripped[:200]!r} names {'none' if not found else 'several'} of the labels {list(labels)}")


class _JudgeScorer(Scorer):
    def __init__(self, spec: Any, *, context: Any = None, backend: JudgeBackend | None = None):
        self.spec, self.name = spec, spec.name
        self.backend = backend or build_backend(spec, context=context)
        #: Every conversation sent to the judge (tests check what the judge saw; bounded).
        self.sent: list[Messages] = []

    def render(self, sample: dict[str, Any], item: dict[str, Any]) -> Messages:
        return [{"role": m.role, "content": render(m.content, sample, item)} for m in self.spec.input]

    def grade_batch(self, samples: Sequence[dict[str, Any]], items: Sequence[dict[str, Any]]) -> list[GradeResult]:
        start = time.monotonic()
        results: list[GradeResult | None] = []
        conversations: list[Messages] = []
        for sample, item in zip(samples, items):
            try:
                conversations.append(self.render(sample, item))
                results.append(None)
            except TemplateError as exc:
                results.append(template_failure(exc))
        self.sent = (self.sent + conversations)[-1000:]
        answers = iter(self.backend(conversations, self.spec.sampling_params) if conversations else [])
        out = [r if r is not None else self.parse(next(answers)) for r in results]
        self._stamp(out, start)
        return out

    def parse(self, answer: str | JudgeError) -> GradeResult:
        if isinstance(answer, JudgeError):
            flag = "model_grader_refusal_error" if answer.refusal else "model_grader_server_error"
            return GradeResult(0.0, errors={flag: True, "model_grader_server_error_details": str(answer)[:500]})
        try:
            return self.interpret(answer)
        except ValueError as exc:
            return GradeResult(0.0, errors={"model_grader_parse_error": True}, details={"error": str(exc)})

    def interpret(self, answer: str) -> GradeResult:
        raise NotImplementedError

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()


class ScoreModelScorer(_JudgeScorer):
    type = "score_model"

    def __init__(self, spec: ScoreModelGrader, **kwargs: Any):
        super().__init__(spec, **kwargs)
        self.pass_threshold = spec.pass_threshold

    def interpret(self, answer: str) -> GradeResult:
        score = parse_score(answer)
        low, high = self.spec.range
        if not math.isfinite(score):
            raise ValueError(f"judge score {score} is not finite")
        # Out-of-range scores are clamped (and noted): one over-eager judge answer must not dominate a batch.
        clamped = min(high, max(low, score))
        details = {"judge_answer": answer[:500]}
        if clamped != score:
            details["clamped_from"] = score  # type: ignore[assignment]
        return GradeResult(clamped, details=details)


class LabelModelScorer(_JudgeScorer):
    type = "label_model"

    def interpret(self, answer: str) -> GradeResult:
        label = parse_label(answer, self.spec.labels)
        result = GradeResult(float(label in self.spec.passing_labels), details={"judge_answer": answer[:500]})
        result.label = label
        return result
