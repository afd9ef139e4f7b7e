"""Regenerate TPO's warm-up task (deterministic): `python examples/data/generate_thoughts.py`.

Rows carry a written `thought` and an `answer` (OpenAI RFT style: extra fields next to `messages`), so
`algorithm: tpo` can warm the policy up to write "thought <R> answer" itself before its rounds. The answers
are 4 characters, each a lowercase letter with probability 0.3, else an uppercase letter or a digit: after the warm-up the
policy writes mixed answers, and a judge that prefers lowercase letters has room to raise its score over the
rounds. Held-out prompts (tpo.thoughts.eval.jsonl) use words that never appear in the train file.

Also writes prompts.eval.jsonl: 42 held-out prompts (the same unseen words, each asked three ways), the
held-out split of RLAIF's preference test and benchmark (its train split is rft.openai.jsonl).
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
THOUGHTS = ("ok", "hm")
LOWER, OTHER = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQSTUVWXYZ0123456789"  # no R (the separator's)


QUESTIONS = ("Tell me about {w}.", "What is {w}?", "Describe {w}.")


def row(word: str, rng: random.Random) -> dict:
    question = rng.choice(QUESTIONS).format(w=word)
    answer = "".join(rng.choice(LOWER if rng.random() < 0.3 else OTHER) for _ in range(4))
    return {"messages": [{"role": "user", "content": question}], "thought": rng.choice(THOUGHTS), "answer": answer}


def main() -> None:
    rng = random.Random(12)
    for name, words, repeat in (("tpo.thoughts.jsonl", TRAIN_WORDS, 2), ("tpo.thoughts.eval.jsonl", EVAL_WORDS, 1)):
        with (HERE / name).open("w", encoding="utf-8") as fh:
            for word in words * repeat:
                fh.write(json.dumps(row(word, rng)) + "\n")
    with (HERE / "prompts.eval.jsonl").open("w", encoding="utf-8") as fh:
        for word in EVAL_WORDS:
            for question in QUESTIONS:
                fh.write(json.dumps({"messages": [{"role": "user", "content": question.format(w=word)}], "word": word}) + "\n")


if __name__ == "__main__":
    main()
