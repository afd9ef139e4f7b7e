"""The shipped gold-answer task: reproducible, prompt-dependent (a prompt-independent policy scores at most
chance under the real grader), held-out prompts unseen in training, answers that end within the length budget."""

from __future__ import annotations

import collections
import importlib.util
import json
from pathlib import Path

from align_api.graders import StringCheckGrader
from align_trainer import builtin, graders

from tests.conftest import REPO

DATA = REPO / "examples" / "data"
FILES = ("gold.trl.jsonl", "gold.trl.eval.jsonl", "gold.warmup.trl.jsonl")
GRADER = {"type": "string_check", "name": "gold", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}


def rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def test_generator_reproduces_the_shipped_files(tmp_path: Path, monkeypatch: object) -> None:
    spec = importlib.util.spec_from_file_location("generate", DATA / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)  # type: ignore[attr-defined]
    module.main()
    for name in FILES:
        assert (tmp_path / name).read_text() == (DATA / name).read_text(), name


def test_a_prompt_independent_policy_scores_at_most_chance() -> None:
    grader = graders.build(StringCheckGrader.model_validate(GRADER))
    for name in ("gold.trl.jsonl", "gold.trl.eval.jsonl"):
        items = rows(name)
        answers = sorted({r["answer"] for r in items})
        assert len(answers) == 4
        for constant in answers:  # the best a policy that ignores the prompt can do: always the same answer
            rewards = [r.reward for r in grader.grade_batch(items, [constant] * len(items))]
            assert sum(rewards) / len(rewards) == 0.25
        # the rule itself scores 1: the answer is a function of the prompt's last character
        right = [chr(ord(r["prompt"][-1]) + 1).upper() for r in items]
        assert all(r.reward == 1.0 for r in grader.grade_batch(items, right))


def test_held_out_prompts_are_unseen_and_warm_up_answers_ignore_the_key() -> None:
    words = lambda name: {r["prompt"].split()[0] for r in rows(name)}  # noqa: E731
    assert not words("gold.trl.jsonl") & words("gold.trl.eval.jsonl")
    warm = rows("gold.warmup.trl.jsonl")
    assert [r["prompt"] for r in warm] == [r["prompt"] for r in rows("gold.trl.jsonl")]
    per_key = collections.defaultdict(collections.Counter)
    for r in warm:
        per_key[r["prompt"][-1]][r["completion"]] += 1
    # every key gets every answer equally often: SFT on these rows cannot learn the mapping
    assert len({tuple(sorted(c.items())) for c in per_key.values()}) == 1 and len(per_key) == 4


def test_answers_end_within_the_completion_budget() -> None:
    tokenizer = builtin.build_tokenizer()
    for r in rows("gold.trl.jsonl"):
        # answer tokens + EOS fit in the RL jobs' maxCompletionLength (gold_support.MAX_COMPLETION = 4)
        assert len(tokenizer(r["answer"], add_special_tokens=False).input_ids) + 1 <= 4
        # the key is the prompt's last token: the first answer token is predicted at the key's position
        assert tokenizer(r["prompt"], add_special_tokens=False).input_ids[-1] == ord(r["prompt"][-1])
