"""scripts/mutation_check.py's scheduler: with several scratch copies every mutation is tested exactly once, in a
copy that holds that mutation and no other, each copy is put back, survivors are named, and a red baseline stops
the run before any mutation (the runner is a stand-in: pytest itself is what the CI run exercises)."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

from tests.mutations import Mutation

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("mutation_check", REPO / "scripts" / "mutation_check.py")
mutation_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mutation_check)

ORIGINAL = {"a.py": "x = 1\ny = 2\n", "b.py": "z = 3\n"}


def _trees(tmp_path: Path, n: int) -> list[Path]:
    trees = []
    for i in range(n):
        tree = tmp_path / f"copy{i}" / "repo"
        tree.mkdir(parents=True)
        for name, text in ORIGINAL.items():
            (tree / name).write_text(text)
        trees.append(tree)
    return trees


def _mutations() -> list[Mutation]:
    """Six breakages; those whose new text says `caught` make the stand-in tests fail."""
    out = []
    for i, (path, old) in enumerate([("a.py", "x = 1"), ("a.py", "y = 2"), ("b.py", "z = 3")] * 2):
        verdict = "caught" if i != 4 else "missed"
        out.append(Mutation(f"piece {i}", path, old, f"{old}  # {verdict} {i}", (f"tests/t{i % 3}.py::test_{i}",)))
    return out


def test_split_by_file_keeps_each_file_whole_and_balances_files() -> None:
    tests = ["tests/a.py::t1", "tests/b.py::t1", "tests/a.py::t2", "tests/c.py::t1", "tests/d.py::t1"]
    groups = mutation_check.split_by_file(tests, 2)
    assert len(groups) == 2 and sorted(t for g in groups for t in g) == sorted(tests)
    for name in ("a", "b", "c", "d"):
        assert sum(any(t.startswith(f"tests/{name}.py") for t in g) for g in groups) == 1
    assert abs(len({t.split("::")[0] for t in groups[0]}) - len({t.split("::")[0] for t in groups[1]})) <= 1
    assert mutation_check.split_by_file(["tests/a.py::t"], 4) == [("tests/a.py::t",)]


def test_two_copies_test_every_mutation_once_alone_and_put_it_back(tmp_path: Path) -> None:
    trees, chosen = _trees(tmp_path, 2), _mutations()
    seen: list[tuple[Path, tuple[str, ...]]] = []
    busy: dict[Path, int] = {t: 0 for t in trees}
    overlap = []
    lock = threading.Lock()

    def runner(tree: Path, tests: tuple[str, ...]) -> tuple[int, float]:
        with lock:
            busy[tree] += 1
            assert busy[tree] == 1, "a copy ran two things at once"
            overlap.append(sum(busy.values()))
        changed = [(n, (tree / n).read_text()) for n in ORIGINAL if (tree / n).read_text() != ORIGINAL[n]]
        time.sleep(0.05)
        with lock:
            busy[tree] -= 1
            seen.append((tree, tests))
        if len(tests) > 1 or not changed:  # the baseline (or an unmutated run): green
            assert not changed, "the baseline ran on a mutated copy"
            return 0, 0.05
        (name, text), = changed  # exactly one file differs: the one mutation applied
        assert sum(text.count(tag) for tag in ("caught", "missed")) == 1
        return (1 if "caught" in text else 0), 0.05

    lines: list[str] = []
    code, survived = mutation_check.check(chosen, trees, runner, report=lines.append)
    assert code == 0 and survived == ["piece 4"]
    mutated_runs = [tests for _, tests in seen if len(tests) == 1]
    assert sorted(mutated_runs) == sorted(m.tests for m in chosen)  # each mutation once
    assert {tree for tree, tests in seen if len(tests) == 1} == set(trees)  # both copies worked
    assert max(overlap) == 2  # at the same time
    for tree in trees:
        assert {n: (tree / n).read_text() for n in ORIGINAL} == ORIGINAL
    assert sum(line.startswith("killed") for line in lines) == 5 and any(l.startswith("SURVIVED") for l in lines)
    baseline_tests = sorted(t for tests in (tests for _, tests in seen if len(tests) > 1) for t in tests)
    assert baseline_tests == sorted({t for m in chosen for t in m.tests})


def test_a_red_baseline_stops_before_any_mutation(tmp_path: Path) -> None:
    trees, chosen = _trees(tmp_path, 2), _mutations()
    calls: list[tuple[str, ...]] = []

    def runner(tree: Path, tests: tuple[str, ...]) -> tuple[int, float]:
        calls.append(tests)
        return (3 if any("t1.py" in t for t in tests) else 0), 0.0

    code, survived = mutation_check.check(chosen, trees, runner, report=lambda line: None)
    assert code == 3 and survived == [] and len(calls) == 2
