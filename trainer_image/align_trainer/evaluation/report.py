"""report.md: the evaluation as a human reads it (tables, gates, charts, the biggest gains and losses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .gates import GateResult
from .policy_stats import PolicyEvaluation, Sample
from .reward_stats import Pair, RewardModelEvaluation

#: Answers in the report are cut to this many characters (a report is read, not grepped for the full text).
MAX_TEXT = 600
#: ... and to this many in the side-by-side table, where three texts share a line.
MAX_CELL = 240

POLICY_ROWS = (
    ("winRate", "Win rate (ties count half)"), ("tieRate", "Tie rate"), ("lossRate", "Loss rate"),
    ("policyReward", "Mean reward, policy"), ("referenceReward", "Mean reward, reference"),
    ("rewardDelta", "Reward delta (policy - reference)"), ("rewardDeltaLow", "Reward delta, CI low"), ("rewardDeltaHigh", "Reward delta, CI high"),
    ("lengthRatio", "Mean length ratio policy / reference"), ("lengthRewardCorrelation", "Reward-length correlation (Spearman)"),
    ("refusalRate", "Refusal-like rate, policy"), ("referenceRefusalRate", "Refusal-like rate, reference"),
    ("samples", "Prompts evaluated"),
)
RM_ROWS = (
    ("accuracy", "Accuracy on held-out pairs"), ("meanMargin", "Mean margin r(chosen) - r(rejected)"),
    ("calibrationError", "Expected calibration error of sigmoid(margin)"),
    ("prefersLongerRate", "Prefers the longer answer"), ("samples", "Pairs evaluated"),
)


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:.4g}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(fmt(c)) for c in row) + " |" for row in rows]
    return lines


def quote(text: str) -> list[str]:
    """An answer as a fenced block: model output may contain markdown that must not render as the report's own."""
    shown = text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f" … [{len(text) - MAX_TEXT} more characters]"
    fence = "````" if "```" in shown else "```"
    return [fence + "text", shown if shown.strip() else "(empty answer)", fence]


def _gates_section(gates: Sequence[GateResult]) -> list[str]:
    if not gates:
        return []
    lines = ["## Gates", ""]
    lines += table(["gate", "result", "values"],
                   [[g.expression, "PASS" if g.passed else "FAIL",
                     ", ".join(f"{k}={fmt(v)}" for k, v in g.values.items())] for g in gates])
    if not all(g.passed for g in gates):
        lines += ["", "**A gate failed: the job fails with `EvaluationGateFailed` and its adapter is not published as final.**"]
    return lines + [""]


def _charts_section(charts: Sequence[Path], out: Path) -> list[str]:
    if not charts:
        return []
    lines = ["## Charts", ""]
    for chart in charts:
        rel = Path(chart).relative_to(out) if Path(chart).is_relative_to(out) else Path(chart)
        lines += [f"![{rel.stem.replace('_', ' ')}]({rel.as_posix()})", ""]
    return lines


def _short(text: str) -> str:
    text = text if len(text) <= MAX_CELL else text[:MAX_CELL] + " …"
    return text if text.strip() else "(empty answer)"


def side_by_side(evaluation: PolicyEvaluation) -> list[str]:
    """The first prompts with both answers in one table, whatever the outcome: with every prompt tied the
    gains and losses are empty, and this is what shows whether the two models even answered differently."""
    d = evaluation.details
    lines = ["## Sample answers, policy and reference", ""]
    if not evaluation.examples:
        return lines + ["(none)", ""]
    total = int(d.get("wins", 0)) + int(d.get("ties", 0)) + int(d.get("losses", 0))
    if "identicalAnswers" in d:
        lines += [f"Policy and reference gave identical answers on {d['identicalAnswers']} of {total} prompts"
                  + (" (the adapter changed nothing the decoding shows)." if d["identicalAnswers"] == total and total
                     else "."), ""]
    lines += table(["#", "prompt", "policy", "reference", "reward policy / reference", "same text"],
                   [[i, _short(s.prompt), _short(s.policy), _short(s.reference),
                     f"{fmt(s.policy_reward)} / {fmt(s.reference_reward)}", s.policy == s.reference]
                    for i, s in enumerate(evaluation.examples, 1)])
    return lines + [""]


def _sample_block(rank: int, s: Sample) -> list[str]:
    return [f"### {rank}. delta {s.delta:+.4g} (policy {s.policy_reward:.4g}, reference {s.reference_reward:.4g})", "",
            "**Prompt**", "", *quote(s.prompt), "", f"**Policy** ({s.policy_length} tokens)", "", *quote(s.policy), "",
            f"**Reference** ({s.reference_length} tokens)", "", *quote(s.reference), ""]


def policy_report(name: str, evaluation: PolicyEvaluation, gates: Sequence[GateResult], charts: Sequence[Path],
                  out: Path, context: dict[str, Any]) -> str:
    m, d = evaluation.metrics, evaluation.details
    lines = [f"# Evaluation of `{name}`: policy vs reference", ""]
    lines += [f"- {key}: {fmt(value)}" for key, value in context.items()] + [""]
    lines += ["## Summary", ""]
    lines += table(["metric", "value"], [[label, m.get(key)] for key, label in POLICY_ROWS if key in m])
    lines += ["", f"Wins {d['wins']}, ties {d['ties']}, losses {d['losses']}; win rate "
              f"{d['confidence']:.0%} interval [{fmt(d['winRateLow'])}, {fmt(d['winRateHigh'])}]. Intervals are "
              f"{d['ciMethod']} intervals over paired prompts."
              + (f" {d['unscored']} prompt(s) could not be scored and are left out." if d["unscored"] else ""), ""]
    lines += _gates_section(gates)
    lines += ["## Length", ""]
    lines += table(["", "policy", "reference"],
                   [[stat, d["policyLengthSummary"][stat], d["referenceLengthSummary"][stat]]
                    for stat in ("mean", "median", "min", "max")])
    lines += ["", f"Reward-length correlation over all answers: Pearson {fmt(d['lengthRewardPearson'])}, Spearman "
              f"{fmt(d['lengthRewardSpearman'])}. Correlation of the length change with the reward change: "
              f"{fmt(d['lengthDeltaRewardDeltaSpearman'])} (near 1: the gains come with longer answers).", ""]
    lines += ["## Rewards", ""]
    lines += table(["", "policy", "reference"],
                   [[stat, d["policyRewardSummary"][stat], d["referenceRewardSummary"][stat]]
                    for stat in ("mean", "std", "min", "p25", "median", "p75", "max")])
    lines += [""] + _charts_section(charts, out)
    lines += side_by_side(evaluation)
    lines += ["## Largest gains", ""]
    lines += [x for i, s in enumerate(evaluation.top_gains, 1) for x in _sample_block(i, s)] or ["(none)", ""]
    lines += ["## Largest losses", ""]
    lines += [x for i, s in enumerate(evaluation.top_losses, 1) for x in _sample_block(i, s)] or ["(none)", ""]
    return "\n".join(lines).rstrip() + "\n"


def _pair_block(rank: int, p: Pair) -> list[str]:
    return [f"### {rank}. margin {p.margin:+.4g}", "", "**Prompt**", "", *quote(p.prompt), "",
            f"**Chosen** (reward {p.chosen_reward:.4g}, {p.chosen_length} tokens)", "", *quote(p.chosen), "",
            f"**Rejected** (reward {p.rejected_reward:.4g}, {p.rejected_length} tokens)", "", *quote(p.rejected), ""]


def reward_model_report(name: str, evaluation: RewardModelEvaluation, gates: Sequence[GateResult],
                        charts: Sequence[Path], out: Path, context: dict[str, Any]) -> str:
    m, d = evaluation.metrics, evaluation.details
    lines = [f"# Evaluation of `{name}`: reward model on held-out pairs", ""]
    lines += [f"- {key}: {fmt(value)}" for key, value in context.items()] + [""]
    if d["lengthBiasFlag"]:
        lines += ["> **Length bias:** " + "; ".join(d["lengthBiasReasons"]) + ". A policy optimised against this "
                  "reward model will likely learn to write longer answers rather than better ones.", ""]
    lines += ["## Summary", ""]
    lines += table(["metric", "value"], [[label, m.get(key)] for key, label in RM_ROWS if key in m])
    lines += [""] + _gates_section(gates)
    lines += ["## Distributions", ""]
    lines += table(["", "chosen", "rejected", "margin"],
                   [[stat, d["chosenRewardSummary"][stat], d["rejectedRewardSummary"][stat], d["marginSummary"][stat]]
                    for stat in ("mean", "std", "min", "p25", "median", "p75", "max")])
    lines += ["", "## Accuracy by length", ""]
    lines += table(["pairs where", "pairs", "accuracy"], [[k, v["n"], v["accuracy"]] for k, v in d["lengthBuckets"].items()])
    lines += ["", f"In the data the chosen answer is longer in {d['chosenLongerInData']:.0%} of pairs; the model prefers "
              f"the longer answer in {fmt(m.get('prefersLongerRate'))} of pairs; within chosen and within rejected "
              f"answers reward and length correlate with Spearman {fmt(d['withinGroupLengthSpearman'])}. "
              f"Length bias flagged: **{'yes' if d['lengthBiasFlag'] else 'no'}**.", ""]
    lines += ["## Calibration", ""]
    lines += table(["confidence bin", "pairs", "mean confidence", "accuracy"],
                   [[f"{r['low']:.2f}-{r['high']:.2f}", r["n"], r["confidence"], r["accuracy"]] for r in d["calibrationBins"]])
    lines += [""] + _charts_section(charts, out)
    lines += ["## Worst-ranked pairs", ""]
    lines += [x for i, p in enumerate(evaluation.worst, 1) for x in _pair_block(i, p)] or ["(none: every pair ranked right)", ""]
    return "\n".join(lines).rstrip() + "\n"
