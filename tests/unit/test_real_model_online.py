"""bench/real_model.py's online-row helpers (docs/algorithms.md, "Online rows on the real model"): the validation
split that settings are chosen on never holds a held-out row nor a row it trains on, and the answer-shape line
tells a letter bias from knowledge."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import real_model  # noqa: E402

QUESTION = "Ron adds more resistors to his series circuit. The current will\n\n A: increase\n B: decrease"


def rows(tag: str, n: int) -> list[dict]:
    return [{"messages": [{"role": "user", "content": f"{tag} {i}"}], "ideal": "AB"[i % 2]} for i in range(n)]


def write(path: Path, data: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in data))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_validation_data_is_carved_from_the_train_split_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("quartz", "ifbench", "pairs"):
        write(data / f"{name}.train.jsonl", rows(f"{name}-train", 10))
        write(data / f"{name}.heldout.jsonl", rows(f"{name}-heldout", 4))
    (data / "ifbench_grader.py").write_text("def grade(s, i):\n    return 1\n")
    out = real_model.validation_data(data, tmp_path / "val", 3)
    for name in ("quartz", "ifbench"):
        val, train = read(out / f"{name}.heldout.jsonl"), read(out / f"{name}.train.jsonl")
        assert val == rows(f"{name}-train", 10)[:3] and train == rows(f"{name}-train", 10)[3:]
        held = read(data / f"{name}.heldout.jsonl")
        assert not any(r in val or r in train for r in held)
        assert read(data / f"{name}.train.jsonl") == rows(f"{name}-train", 10)  # the source is untouched
    # the offline rows and the grader source are the originals
    assert read(out / "pairs.heldout.jsonl") == rows("pairs-heldout", 4)
    assert (out / "ifbench_grader.py").read_text().startswith("def grade")


def test_quartz_valid_reports_format_failures_and_the_letter_bias() -> None:
    options = {"A": "increase", "B": "decrease"}
    held = [{"options": options, "ideal": ideal} for ideal in "AAAB"]
    line = real_model.quartz_valid(held, ["B: decrease", "B: less", "C: Rich", "A: increase"])
    assert line == ("naming an option 0.750, choosing A 0.33 (ideal A 0.75), right on A questions 0/3, "
                    "on B questions 0/1")


def test_keep_reuses_a_finished_run_of_the_same_manifest_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--keep: choosing a setting on validation with seed 1, then measuring seeds 1 2 3 trains seed 1 once; another
    seed or setting trains, and a run that did not finish is started over (its folder removed: no resume)."""
    import align_trainer.main

    calls: list[str] = []

    def run(argv: list[str]) -> int:
        config = Path(argv[argv.index("--config") + 1]).read_text()
        calls.append(config)
        out = Path(os.environ["ALIGN_OUTPUT_DIR"])
        assert not (out / "stale").exists(), "a stopped run's folder was not cleared"
        (out / "final").mkdir(parents=True)
        return 1 if "learningRate: 0.1" in config else 0

    monkeypatch.setattr(align_trainer.main, "run", run)
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(tmp_path))  # Bench.train sets it: restored after
    runs = tmp_path / "runs"
    runs.mkdir()
    bench = real_model.Bench("builtin://tiny", tmp_path, tmp_path / "data", runs, keep=True)
    first = bench.train("dpo", "dpo", "pairs", 1, split="fit", learningRate=1e-4)
    assert bench.train("dpo", "dpo", "pairs", 1, split="fit", learningRate=1e-4) == first and len(calls) == 1
    assert bench.train("dpo", "dpo", "pairs", 2, split="fit", learningRate=1e-4) != first and len(calls) == 2
    assert bench.train("dpo", "dpo", "pairs", 1, split="fit", learningRate=5e-4) != first and len(calls) == 3
    with pytest.raises(RuntimeError, match="trainer exited 1"):
        bench.train("dpo", "dpo", "pairs", 1, split="fit", learningRate=0.1)
    stopped = [p for p in runs.glob("dpo-1-*") if p.is_dir() and not (p / real_model.COMPLETE).exists()]
    assert len(stopped) == 1
    (stopped[0] / "stale").write_text("")
    with pytest.raises(RuntimeError, match="trainer exited 1"):
        bench.train("dpo", "dpo", "pairs", 1, split="fit", learningRate=0.1)
    assert len(calls) == 5


def test_validation_only_stops_the_preference_rows_before_any_held_out_measure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write(data / "pairs.heldout.jsonl", rows("pairs-heldout", 2))
    bench = real_model.Bench("builtin://tiny", tmp_path, data, tmp_path, keep=True)
    monkeypatch.setattr(bench, "tokenizer", lambda: None)
    monkeypatch.setattr(real_model.ev, "fit_pair_prompt", lambda *a, **k: [])
    monkeypatch.setattr(real_model, "validated", lambda *a, **k: (8, {1: tmp_path}, "validation loss ...; chosen 8"))

    def held_out(*_: object, **__: object) -> None:
        raise AssertionError("a held-out measure ran")
    monkeypatch.setattr(real_model.ev, "pair_logps", held_out)
    monkeypatch.setattr(bench, "base_pairs", held_out)
    monkeypatch.setattr(real_model, "VALIDATION_ONLY", True)
    cells = real_model.row_dpo(bench, [1])
    assert cells[1] == "validation only (held-out not measured): validation loss ...; chosen 8"
    monkeypatch.setattr(real_model, "VALIDATION_ONLY", False)
    with pytest.raises(AssertionError, match="a held-out measure ran"):
        real_model.row_dpo(bench, [1])


def test_quartz_valid_tells_a_letter_lean_from_a_question_dependent_choice() -> None:
    options = {"A": "increase", "B": "decrease"}
    held = [{"options": options, "ideal": ideal} for ideal in "AABB"]
    # both score 0.5 on a balanced split: "A" everywhere is right on every A question and no B question
    lean = real_model.quartz_valid(held, ["A", "A: increase", "A", "A"])
    assert lean.endswith("choosing A 1.00 (ideal A 0.50), right on A questions 2/2, on B questions 0/2")
    # the same share of "A" answers, on the questions whose ideal is "A": right on all of them
    follows = real_model.quartz_valid(held, ["A", "A: increase", "B: decrease", "decrease"])
    assert follows.endswith("choosing A 0.50 (ideal A 0.50), right on A questions 2/2, on B questions 2/2")
    # the same letters on the other questions: wrong on all
    against = real_model.quartz_valid(held, ["B", "B", "A", "increase"])
    assert against.endswith("choosing A 0.50 (ideal A 0.50), right on A questions 0/2, on B questions 0/2")
