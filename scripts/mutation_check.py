"""Break each catalogued piece once (tests/mutations.py) and check that a named test fails.

    python scripts/mutation_check.py [--only SUBSTRING] [--keep] [--jobs N]

The tree (without .git and virtualenvs) is copied to a scratch directory, once per job; each mutation edits one
file in one copy, runs its tests with pytest (-x, no xdist), and puts the file back. With --jobs N, N copies take
mutations from one queue at once (each copy holds at most one mutation at a time); the baseline (every named
test on the unmutated tree) is split between them by test file. A mutation that leaves every named test green
is "SURVIVED" and the exit status is 1. The last line is `mutation_check: killed=K survived=S`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.mutations import MUTATIONS, Mutation  # noqa: E402

SKIP = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.egg-info", ".pytest_cache")


def scratch_copy() -> Path:
    root = Path(tempfile.mkdtemp(prefix="align-mutations-"))
    tree = root / "repo"
    shutil.copytree(REPO, tree, ignore=SKIP)
    return tree


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int, float]:
    packages = ("api", "operator", "trainer_image", "localcluster")  # the scratch tree's, not the editable install's
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / p) for p in packages),
           "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-n", "0", *tests],
                          cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return done.returncode, time.monotonic() - started


def apply(tree: Path, mutation: Mutation) -> str:
    path = tree / mutation.path
    original = path.read_text()
    if original.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.path}: {mutation.old!r} occurs {original.count(mutation.old)} times "
                         f"(tests/mutations.py is out of step with the source)")
    path.write_text(original.replace(mutation.old, mutation.new))
    return original


Runner = Callable[[Path, tuple[str, ...]], tuple[int, float]]


def split_by_file(tests: Sequence[str], parts: int) -> list[tuple[str, ...]]:
    """The tests in `parts` groups, each test file whole in one group (its module fixtures start once), the
    groups about equal in files; empty groups dropped."""
    files: dict[str, list[str]] = {}
    for test in sorted(tests):
        files.setdefault(test.split("::")[0], []).append(test)
    groups: list[list[str]] = [[] for _ in range(max(1, parts))]
    for index, members in enumerate(files.values()):
        groups[index % len(groups)].extend(members)
    return [tuple(g) for g in groups if g]


def check(chosen: Sequence[Mutation], trees: Sequence[Path], runner: Runner | None = None,
          report: Callable[[str], None] = print) -> tuple[int, list[str]]:
    """(baseline exit code, the pieces that survived). Each tree runs one thing at a time: first its share of
    the baseline, then mutations from a shared queue, each applied, tested and put back before the next."""
    runner = runner or run_tests
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            report(line)

    baseline = sorted({t for m in chosen for t in m.tests})
    codes: list[int] = []

    def run_baseline(tree: Path, tests: tuple[str, ...]) -> None:
        code, _ = runner(tree, tests)
        with lock:
            codes.append(code)

    started = time.monotonic()
    _in_threads([(run_baseline, (tree, group)) for tree, group in zip(trees, split_by_file(baseline, len(trees)))])
    if any(codes):
        return next(c for c in codes if c), []
    say(f"baseline: {len(baseline)} tests green in {time.monotonic() - started:.0f}s")
    todo: queue.Queue[Mutation] = queue.Queue()
    for mutation in chosen:
        todo.put(mutation)
    survived: list[str] = []

    def worker(tree: Path) -> None:
        while True:
            try:
                mutation = todo.get_nowait()
            except queue.Empty:
                return
            original = apply(tree, mutation)
            try:
                code, seconds = runner(tree, mutation.tests)
            finally:
                (tree / mutation.path).write_text(original)
            if code == 0:
                with lock:
                    survived.append(mutation.piece)
            verdict = "killed" if code != 0 else "SURVIVED"
            say(f"{verdict:8} {seconds:5.0f}s  {mutation.piece}  <- {', '.join(t.split('::')[-1] for t in mutation.tests)}")

    _in_threads([(worker, (tree,)) for tree in trees])
    return 0, [m.piece for m in chosen if m.piece in survived]


def _in_threads(calls: list[tuple[Callable[..., None], tuple]]) -> None:
    """Run the calls at once and wait for all; the first exception raised in one is raised here."""
    errors: list[BaseException] = []

    def guarded(fn: Callable[..., None], args: tuple) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the mutations whose piece contains this text")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--jobs", type=int, default=1, help="scratch copies testing mutations at once (default 1)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only in m.piece]
    trees = [scratch_copy() for _ in range(max(1, args.jobs))]
    try:
        code, survived = check(chosen, trees, report=lambda line: print(line, flush=True))
        if code != 0:
            print(f"the unmutated tree fails its tests (exit {code}); fix that first", file=sys.stderr)
            return 2
    finally:
        if not args.keep:
            for tree in trees:
                shutil.rmtree(tree.parent, ignore_errors=True)
    print(f"mutation_check: killed={len(chosen) - len(survived)} survived={len(survived)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
