"""The gold-answer task (examples/data/gold.*.trl.jsonl, see examples/data/generate.py), shared by the tests
and bench/rl_heldout.py: a format-only SFT warm-up, an RL job started from it, and held-out evaluation.

The prompt "<word> <key>" ends with a key letter; the answer is the next letter in upper case ("apple c" -> "D"), graded by
string_check (exact) against {{item.answer}}. The four answers are balanced, so a policy that ignores the prompt
scores at most CHANCE = 0.25. The warm-up (answers drawn independently of the key) teaches "one letter, then
EOS" only, so RL starts from a policy that samples valid answers at about chance and its reward has signal.
Held-out prompts use words never seen in training.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from align_api.constants import ExitCode

from .trainer_support import DATA, read_metrics

KEYS = "abcd"
ANSWERS = {chr(ord(k) + 1).upper() for k in KEYS}
CHANCE = 1 / len(KEYS)
TRAIN, HELD_OUT, WARMUP = DATA / "gold.trl.jsonl", DATA / "gold.trl.eval.jsonl", DATA / "gold.warmup.trl.jsonl"
GOLD_GRADER = {"type": "string_check", "name": "gold", "input": "{{sample.output_text}}",
               "reference": "{{item.answer}}", "operation": "eq"}
#: The AI judge's input (rlaif): the grader's question put to a score_model judge, with the reference answer;
#: a real LLM judge would be sent exactly these messages.
JUDGE_INPUT = [
    {"role": "system", "content": 'Does the answer equal the reference answer exactly? Reply {"result": 1} if it '
                                  'does, {"result": 0} otherwise.'},
    {"role": "user", "content": "Reference answer:\n{{item.answer}}"},
    {"role": "user", "content": "Answer:\n{{sample.output_text}}"},
]
#: Completions of one letter + EOS fit in 2 tokens; 4 leaves room for the policy to ramble (and be wrong).
MAX_COMPLETION = 4
#: builtin://tiny-rl, not tiny: tiny's logits span ~1.3 nats (tied embeddings at std 0.02, see builtin.py), and
#: measured on this task its format-only warm-up reached 44% valid answers after 200 SFT steps even sampled at
#: temperature 0.15 (tiny-rl: 70% after 48 steps at temperature 1), and 24 RL steps of grpo, rloo, ppo or
#: online-dpo from it stayed at 0.09-0.15 held-out reward, below chance. tiny-rl samples at temperature 1.
BASE = "tiny-rl"
TEMPERATURE = 1.0
ADAPTER = {"r": 8, "alpha": 16}  # default dropout (0.05): the rollout statistics must not depend on it

#: Per algorithm: hyperparameters of the RL job (measured on 3 seeds, bench/rl_heldout.py).
RL_HP: dict[str, dict[str, Any]] = {
    "grpo": {"learningRate": 0.003, "batchSize": 32, "numGenerations": 8, "maxSteps": 96, "klCoef": 0.02},
    "rloo": {"learningRate": 0.003, "batchSize": 32, "numGenerations": 8, "maxSteps": 96, "klCoef": 0.02},
    "ppo": {"learningRate": 0.005, "batchSize": 32, "numGenerations": 8, "maxSteps": 96, "klCoef": 0.02},
    "online-dpo": {"learningRate": 0.005, "batchSize": 16, "maxSteps": 128, "beta": 0.1},
    # direct feedback is PPO with the judge's score as the reward: PPO's budget
    "rlaif": {"learningRate": 0.005, "batchSize": 32, "numGenerations": 8, "maxSteps": 96, "klCoef": 0.02,
              "feedback": "direct"},
}


def gold_judge(messages: list[dict[str, str]]) -> float:
    """The fake judge's verdict on JUDGE_INPUT: 1 when the answer equals the reference, 0 otherwise (the
    question string_check eq answers; the judge sees the sample and {{item.answer}}, nothing else)."""
    reference = messages[1]["content"].removeprefix("Reference answer:\n")
    answer = messages[2]["content"].removeprefix("Answer:\n")
    return float(answer == reference)


def judge_grader(server: Any) -> dict[str, Any]:
    """The score_model grader asking `server` (rl_support.JudgeServer(gold_judge)) JUDGE_INPUT."""
    return server.grader("gold-judge", JUDGE_INPUT)


def job(tmp_path: Path, name: str, algorithm: str, train: Path, *, seed: int, hp: dict[str, Any],
        adapter: dict[str, Any] | None = None, reference: dict[str, Any] | None = None,
        grader: dict[str, Any] | None = None) -> Path:
    """An AlignmentJob manifest on builtin://tiny-rl for the gold task (plain-string prompts: format trl)."""
    model: dict[str, Any] = {"base": f"builtin://{BASE}", "adapter": {**ADAPTER, **(adapter or {})}}
    if reference:
        model["reference"] = reference
    spec: dict[str, Any] = {
        "algorithm": algorithm, "model": model,
        "data": {"train": {"uri": str(train), "format": "trl"}},
        "hyperparameters": {"batchSize": 16, "maxLength": 32, "loggingSteps": 1, "seed": seed, **hp},
        "resources": {"gpusPerNode": 0}, "checkpoints": {"everySteps": 1000, "keep": 1},
        "evaluation": {"enabled": False},
    }
    if grader:
        spec["grader"] = grader
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                                    "metadata": {"name": name}, "spec": spec}, sort_keys=False))
    return path


def run_job(config: Path, output: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Run the trainer entry point in-process; (final adapter directory, metrics records)."""
    from align_trainer.main import run
    before = os.environ.get("ALIGN_OUTPUT_DIR")
    os.environ["ALIGN_OUTPUT_DIR"] = str(output)
    try:
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    finally:
        if before is None:
            os.environ.pop("ALIGN_OUTPUT_DIR", None)
        else:
            os.environ["ALIGN_OUTPUT_DIR"] = before
    return output / "final", read_metrics(output)


def warm_up(tmp_path: Path, seed: int, steps: int = 48, lr: float = 0.02) -> Path:
    """SFT on the format-only rows; the final adapter directory."""
    config = job(tmp_path, f"warmup-{seed}", "sft", WARMUP, seed=seed,
                 hp={"learningRate": lr, "batchSize": 16, "maxSteps": steps})
    final, _ = run_job(config, tmp_path / f"warmup-{seed}")
    return final


def rl(tmp_path: Path, algorithm: str, warm: Path | None, seed: int, *, hp: dict[str, Any] | None = None,
       grader: dict[str, Any] | None = None, name: str | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The RL job started from the warm-up adapter (None: from scratch), with the warm-up as its KL reference."""
    name = name or f"{algorithm}-{seed}"
    start = {} if warm is None else {"adapter": {"init": f"file://{warm}"},
                                     "reference": {"kind": "adapter", "adapter": f"file://{warm}"}}
    config = job(tmp_path, name, algorithm, TRAIN, seed=seed,
                 hp={"maxCompletionLength": MAX_COMPLETION, "temperature": TEMPERATURE, **RL_HP.get(algorithm, {}),
                     **(hp or {})}, grader=grader or GOLD_GRADER, **start)
    return run_job(config, tmp_path / name)


def _load(adapter: Path | None) -> tuple[Any, Any]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align_trainer import builtin
    path = builtin.materialize(BASE)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval(), tokenizer


def heldout(adapter: Path | None, reference: Path | None = None, *, samples: int = 8, seed: int = 0,
            temperature: float = TEMPERATURE) -> dict[str, float]:
    """Mean gold reward of `samples` sampled completions per held-out prompt (None = the bare base model), and
    with `reference`: the mean per-token KL(policy || reference) over the sampled completion tokens (exact over
    the vocabulary at each position, at the sampling temperature)."""
    import torch

    from align_trainer import graders, online
    from align_api.graders import StringCheckGrader
    rows = [json.loads(line) for line in HELD_OUT.read_text().splitlines()]
    model, tokenizer = _load(adapter)
    grader = graders.build(StringCheckGrader.model_validate(GOLD_GRADER))
    prompts = [r["prompt"] for r in rows for _ in range(samples)]
    items = [r for r in rows for _ in range(samples)]
    torch.manual_seed(seed)
    with torch.no_grad():
        rollout = online.generate(model, tokenizer, prompts, max_new_tokens=MAX_COMPLETION, temperature=temperature)
        rewards = [r.reward for r in grader.grade_batch(items, rollout.texts)]
        out = {"reward": sum(rewards) / len(rewards),
               "valid": sum(t in ANSWERS for t in rollout.texts) / len(rollout.texts)}
        if reference is not None:
            ref_model, _ = _load(reference)
            out["kl"] = _token_kl(model, ref_model, rollout, temperature)
    return out


def _token_kl(model: Any, ref_model: Any, rollout: Any, temperature: float) -> float:
    import torch
    start = rollout.prompt_len - 1

    def logp(m: Any) -> Any:
        logits = m(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits[:, start:-1]
        return torch.log_softmax(logits.float() / temperature, dim=-1)

    p, q = logp(model), logp(ref_model)
    kl = (p.exp() * (p - q)).sum(-1)
    mask = rollout.completion_mask.float()
    value = float((kl * mask).sum() / mask.sum())
    return value if math.isfinite(value) else float("nan")
