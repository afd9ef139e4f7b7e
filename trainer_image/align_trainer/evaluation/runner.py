"""Run spec.evaluation against a trained model: choose prompts, generate, score, summarise, write, gate.

What the entry point registers in ctx.before_publish, `after_training(ctx, model, result)`, lives in hook.py
with the checkpoint callback; hook.py calls this module, never the other way round.
"""

from __future__ import annotations

import logging
import random
import weakref
from pathlib import Path
from typing import Any, Sequence

from align_api.evaluation import Evaluation

from ..errors import ConfigError
from .generate import generate_pair
from .plan import DEFAULT_ON, Plan, plan  # noqa: F401  (re-exported: the runner's public names)
from .outputs import EvaluationOutcome, write_policy_evaluation, write_reward_model_evaluation
from .policy_stats import Sample, evaluate_policy
from .reward_stats import Pair, evaluate_reward_model
from ..inference import reward_model_input, reward_model_scores
from .scoring import AnswerScorer, GraderScorer, completion_text, prompt_for_display, token_length

log = logging.getLogger("align_trainer.evaluation")

CHECKPOINT_DIR = "evaluations"


# --------------------------------------------------------------------------- data
def _rows(ctx: Any, dataset_spec: Any, kind: Any) -> list[dict[str, Any]]:
    from .. import data as data_mod
    from ..formats import convert
    records = data_mod.parse_split(dataset_spec, base_dir=ctx.paths.base_dir, cache_dir=ctx.paths.cache_dir,
                                   seed=ctx.hp.seed)
    return convert(records, kind)


def _prompt_of(row: dict[str, Any]) -> dict[str, Any]:
    if "prompt" in row:
        return dict(row)
    if "messages" in row:  # SFT rows: the conversation up to its last assistant turn is the prompt
        messages = list(row["messages"])
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        return {**{k: v for k, v in row.items() if k != "messages"}, "prompt": messages}
    raise ConfigError("evaluation prompts need a prompt (or messages) column")


def _unique_prompts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each prompt once (preference and unpaired rows repeat their prompt), first occurrence kept."""
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = repr(row["prompt"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def evaluation_rows(ctx: Any, evaluation: Evaluation, kind: str) -> tuple[list[dict[str, Any]], str]:
    """(rows, where they came from): evaluation.prompts, else the eval split, else (flagged) the train split."""
    from ..contracts import DataKind
    data_kind = DataKind.PREFERENCE if kind == "reward_model" else DataKind.PROMPT_ONLY
    if evaluation.prompts is not None:
        rows, source = _rows(ctx, evaluation.prompts, data_kind), f"evaluation.prompts ({evaluation.prompts.uri})"
    elif ctx.spec.data.eval is not None:
        rows, source = _rows(ctx, ctx.spec.data.eval, data_kind), f"eval split ({ctx.spec.data.eval.uri})"
    elif ctx.eval_dataset is not None:
        rows, source = [dict(r) for r in ctx.eval_dataset], "eval split (held out from train by evalFraction)"
    elif ctx.train_dataset is not None:
        rows, source = [dict(r) for r in ctx.train_dataset], "TRAIN split (no held-out data: in-sample numbers)"
    else:
        raise ConfigError("evaluation has no data: set spec.evaluation.prompts or spec.data.eval")
    if kind == "policy":
        rows = _unique_prompts([_prompt_of(r) for r in rows])
    random.Random(ctx.hp.seed).shuffle(rows)
    return rows[: evaluation.samples], source


# --------------------------------------------------------------------------- the two evaluations
def _context(ctx: Any, source: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"job": ctx.name, "algorithm": str(ctx.spec.algorithm), "base model": ctx.spec.model.base,
            "reference": ctx.spec.model.reference.kind, "prompts": source, **extra}


def evaluate_policy_model(ctx: Any, model: Any, plan_: Plan, out: Path, scorer: AnswerScorer | None = None,
                          *, gates: Sequence[str] = (), charts: bool = True) -> EvaluationOutcome:
    rows, source = evaluation_rows(ctx, plan_.spec, "policy")
    settings = plan_.spec.generation
    policy, reference = generate_pair(model, ctx.tokenizer, [r["prompt"] for r in rows], settings, seed=ctx.hp.seed,
                                      batch_size=ctx.hp.batch_size, max_prompt_length=ctx.hp.max_prompt_length)
    own = scorer is None
    scorer = scorer or GraderScorer(plan_.grader, context=ctx)
    try:
        pol = scorer.score(rows, [a.text for a in policy])
        ref = scorer.score(rows, [a.text for a in reference])
    finally:
        if own and hasattr(scorer, "close"):
            scorer.close()  # type: ignore[union-attr]
    samples = [Sample(prompt=prompt_for_display(r["prompt"], ctx.tokenizer), policy=p.text, reference=q.text,
                      policy_reward=ps.reward, reference_reward=qs.reward, policy_length=p.length,
                      reference_length=q.length, policy_label=ps.label, reference_label=qs.label)
               for r, p, q, ps, qs in zip(rows, policy, reference, pol, ref)]
    result = evaluate_policy(samples, seed=ctx.hp.seed)
    scorer_name = f"{plan_.grader.type} grader {plan_.grader.name!r}" if plan_.grader is not None else "custom"
    context = _context(ctx, source, {"scorer": scorer_name, "decoding": "greedy" if settings.temperature == 0 else
                                     f"temperature {settings.temperature}, top_p {settings.top_p}",
                                     "max new tokens": settings.max_new_tokens, "seed": ctx.hp.seed})
    return write_policy_evaluation(out, ctx.name, samples, result, gates, context, charts=charts)


def evaluate_reward_model_in_memory(ctx: Any, model: Any, plan_: Plan, out: Path,
                                    *, gates: Sequence[str] = (), charts: bool = True) -> EvaluationOutcome:
    rows, source = evaluation_rows(ctx, plan_.spec, "reward_model")
    tok = ctx.tokenizer
    texts = [reward_model_input(r["prompt"], r[key], tok) for r in rows for key in ("chosen", "rejected")]
    rewards = reward_model_scores(model, tok, texts, batch_size=ctx.hp.batch_size, max_length=ctx.hp.max_length)
    pairs = [Pair(prompt=prompt_for_display(r["prompt"], tok), chosen=completion_text(r["chosen"]),
                  rejected=completion_text(r["rejected"]), chosen_reward=rewards[2 * i],
                  rejected_reward=rewards[2 * i + 1], chosen_length=token_length(tok, r["chosen"]),
                  rejected_length=token_length(tok, r["rejected"])) for i, r in enumerate(rows)]
    result = evaluate_reward_model(pairs)
    return write_reward_model_evaluation(out, ctx.name, pairs, result, gates, _context(ctx, source, {}), charts=charts)


def run(ctx: Any, model: Any, out: Path, *, gates: Sequence[str] = (), scorer: AnswerScorer | None = None,
        plan_: Plan | None = None, charts: bool = True) -> EvaluationOutcome | None:
    plan_ = plan_ or plan(ctx)
    if plan_ is None:
        return None
    if plan_.kind == "reward_model":
        return evaluate_reward_model_in_memory(ctx, model, plan_, out, gates=gates, charts=charts)
    return evaluate_policy_model(ctx, model, plan_, out, scorer, gates=gates, charts=charts)


# --------------------------------------------------------------------------- metrics
#: Gauges per registry (a registry refuses a second gauge of the same name); weak, so a finished run's
#: registry and gauges can go (tests run several trainers in one process).
_GAUGES: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def gauge_name(metric: str) -> str:
    """winRate -> align_trainer_eval_win_rate (align_api.evaluation.evaluation_from_metrics maps it back)."""
    from align_api.evaluation import eval_gauge_suffix
    return "align_trainer_" + eval_gauge_suffix(metric)


def export_gauges(metrics_sink: Any, job: str, values: dict[str, float | None]) -> None:
    """align_trainer_eval_<metric>{job} on the trainer's Prometheus registry; undefined numbers as NaN."""
    registry = getattr(metrics_sink, "registry", None)
    if registry is None:
        return
    from prometheus_client import Gauge
    gauges = _GAUGES.setdefault(registry, {})
    for key, value in values.items():
        if key not in gauges:
            gauges[key] = Gauge(gauge_name(key), f"Evaluation: {key} (see status.evaluation).", ["job"],
                                registry=registry)
        gauges[key].labels(job=job).set(float("nan") if value is None else value)
    state = getattr(metrics_sink, "state", None)
    if isinstance(state, dict):  # status.json of local runs carries the evaluation too
        state["evaluation"] = dict(values)

