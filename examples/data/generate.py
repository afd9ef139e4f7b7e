"""Regenerate the synthetic example datasets (deterministic): `python examples/data/generate.py`.

The task is learnable by builtin://tiny in a few dozen steps: the preferred answer always starts with
"Sure!" and praises the thing asked about; the rejected one starts with "Nope!". The SFT task teaches the
same answer style. Prompts of the eval files use words that never appear in the train files, so eval
metrics measure the rule, not memorised pairs.

The gold-answer task (`gold.*.trl.jsonl`) is for online RL: a plain-string prompt "<word> <key>" ends with a key
letter and the answer is the letter after it, graded by string_check against {{item.answer}}. The answers are
balanced over GOLD_KEYS, so a policy that ignores the prompt scores at most 1 / len(GOLD_KEYS) (chance). The
warm-up file teaches only the format (one letter, then EOS) with answers drawn independently of the key.

The ReFT task (`reft.trl*.jsonl`): prompt "xyz k" (key in a-d last), golden `answer` the key's index, warm-up
completion "k=<index>"; see REFT_KEYS below and docs/algorithms.md (reft).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORDS = ("apple bread cloud dance eagle flame grape house island jelly kite lemon mango night ocean piano "
         "quilt river stone tiger umbra violin water xenon yacht zebra amber bison cedar delta ember fjord "
         "glass honey ivory jade koala lotus maple nectar olive pearl quartz raven sage tulip").split()
TRAIN_WORDS, EVAL_WORDS = WORDS[:32], WORDS[32:]
SYSTEM = "Be kind."


def question(word: str, rng: random.Random) -> str:
    return rng.choice(["Tell me about {w}.", "What is {w}?", "Do you like {w}?", "Describe {w}."]).format(w=word)


def good(word: str) -> str:
    return f"Sure! {word} is great."


def bad(word: str, rng: random.Random) -> str:
    # as long as good(word): sequence log-probs (reference-free losses, length bias) compare like for like
    return rng.choice(["Nope! {w} is awful.", "Nope! {w} is gross."]).format(w=word)


def write(name: str, rows: list[dict]) -> None:
    with (HERE / name).open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def sft_rows(words: list[str], rng: random.Random, repeat: int) -> list[dict]:
    rows = []
    for _ in range(repeat):
        for w in words:
            q = question(w, rng)
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                    {"role": "assistant", "content": good(w)}]
            if rng.random() < 0.25:  # multi-turn: the first (bad) answer is context only (weight 0)
                msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": bad(w, rng), "weight": 0},
                        {"role": "user", "content": "Try again."}, {"role": "assistant", "content": good(w), "weight": 1}]
            rows.append({"messages": msgs})
    return rows


def preference_rows(words: list[str], rng: random.Random, repeat: int) -> list[dict]:
    rows = []
    for _ in range(repeat):
        for w in words:
            rows.append({"input": {"messages": [{"role": "user", "content": question(w, rng)}]},
                         "preferred_output": [{"role": "assistant", "content": good(w)}],
                         "non_preferred_output": [{"role": "assistant", "content": bad(w, rng)}]})
    return rows


def ranked_rows(words: list[str], rng: random.Random, repeat: int) -> list[dict]:
    rows = []
    for _ in range(repeat):
        for w in words:
            first_good = rng.random() < 0.5
            a, b = (good(w), bad(w, rng)) if first_good else (bad(w, rng), good(w))
            rows.append({"question": question(w, rng), "response_1": a, "response_2": b,
                         "overall_response": 1 if first_good else 2})
    return rows


GOLD_KEYS = "abcd"


def gold_answer(key: str) -> str:
    # the next letter, upper case: answer tokens never occur in prompts, so the position after an answer
    # (-> EOS) and the position after a key (-> answer) differ in their own token, not only in context
    return chr(ord(key) + 1).upper()


def gold_rows(words: list[str]) -> list[dict]:
    """Every (word, key) once: each answer occurs equally often, so chance is exactly 1 / len(GOLD_KEYS)."""
    return [{"prompt": f"{w} {k}", "answer": gold_answer(k)} for w in words for k in GOLD_KEYS]


def gold_warmup_rows(words: list[str], rng: random.Random) -> list[dict]:
    """The gold prompts with an answer drawn independently of the key: every key gets every answer equally
    often, so SFT on these teaches "one answer letter, then EOS" and nothing about which one."""
    answers = {k: [gold_answer(a) for a in GOLD_KEYS] * (len(words) // len(GOLD_KEYS)) for k in GOLD_KEYS}
    for column in answers.values():
        rng.shuffle(column)
    return [{"prompt": f"{w} {k}", "completion": answers[k][i]} for i, w in enumerate(words) for k in GOLD_KEYS]


#: ReFT task: a plain-string prompt "xyz k", three distractor letters (never a key) and a key letter last; the
#: golden answer (item field `answer`) is the key's index, and the warm-up completion reasons before it: it
#: restates the key, then gives the answer after "=" ("xyz c" -> "c=2"; the grader reads what follows the last
#: "="). Every key occurs equally often, so a policy that ignores the prompt scores at most 1 / len(REFT_KEYS)
#: (chance). The held-out split holds (distractors, key) combinations that never occur in the train split.
REFT_KEYS = "abcd"
REFT_NOISE = "efghijklmnopqrstuvwxyz"


def reft_answer(key: str) -> str:
    return str(REFT_KEYS.index(key))


def reft_rows(rng: random.Random, per_key: int, seen: set[str]) -> list[dict]:
    rows = []
    for _ in range(per_key):
        for key in REFT_KEYS:
            while (prompt := "".join(rng.choice(REFT_NOISE) for _ in range(3)) + " " + key) in seen:
                pass
            seen.add(prompt)
            rows.append({"prompt": prompt, "completion": f"{key}={reft_answer(key)}", "answer": reft_answer(key)})
    rng.shuffle(rows)
    return rows


def main() -> None:
    rng = random.Random(7)
    write("sft.openai.jsonl", sft_rows(TRAIN_WORDS, rng, 2))
    write("sft.openai.eval.jsonl", sft_rows(EVAL_WORDS, rng, 1))
    write("preference.openai.jsonl", preference_rows(TRAIN_WORDS, rng, 2))
    write("preference.openai.eval.jsonl", preference_rows(EVAL_WORDS, rng, 2))
    write("pairs.ranked.jsonl", ranked_rows(TRAIN_WORDS, rng, 2))
    write("pairs.ranked.eval.jsonl", ranked_rows(EVAL_WORDS, rng, 2))
    # TRL formats: explicit-prompt preference (standard strings) and unpaired (KTO) rows
    write("preference.trl.jsonl", [{"prompt": r["input"]["messages"][0]["content"],
                                    "chosen": r["preferred_output"][0]["content"],
                                    "rejected": r["non_preferred_output"][0]["content"]}
                                   for r in preference_rows(TRAIN_WORDS, rng, 1)])
    write("unpaired.trl.jsonl", [{"prompt": question(w, rng), "completion": good(w) if i % 2 else bad(w, rng),
                                  "label": bool(i % 2)} for i, w in enumerate(TRAIN_WORDS * 2)])
    # gold-answer task: its own RNG, so the files above do not change when it does
    gold_rng = random.Random(11)
    write("gold.trl.jsonl", gold_rows(TRAIN_WORDS))
    write("gold.trl.eval.jsonl", gold_rows(EVAL_WORDS))
    write("gold.warmup.trl.jsonl", gold_warmup_rows(TRAIN_WORDS, gold_rng))
    seen: set[str] = set()
    write("reft.trl.jsonl", reft_rows(random.Random(11), 48, seen))
    write("reft.trl.eval.jsonl", reft_rows(random.Random(12), 16, seen))


if __name__ == "__main__":
    main()
