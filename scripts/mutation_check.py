"""Break each catalogued piece once (tests/mutations.py) and check that a named test fails.

    python scripts/mutation_check.py [--only SUBSTRING] [--keep]

The tree (without .git and virtualenvs) is copied once to a scratch directory; each mutation edits one file
there, runs its tests with pytest (-x, no xdist), and puts the file back. A mutation that leaves every named
test green is "SURVIVED" and the exit status is 1. The last line is `mutation_check: killed=K survived=S`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the mutations whose piece contains this text")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only in m.piece]
    tree = scratch_copy()
    survived: list[str] = []
    try:
        baseline = sorted({t for m in chosen for t in m.tests})
        code, seconds = run_tests(tree, tuple(baseline))
        if code != 0:
            print(f"the unmutated tree fails its tests (exit {code}); fix that first", file=sys.stderr)
            return 2
        print(f"baseline: {len(baseline)} tests green in {seconds:.0f}s", flush=True)
        for mutation in chosen:
            original = apply(tree, mutation)
            try:
                code, seconds = run_tests(tree, mutation.tests)
            finally:
                (tree / mutation.path).write_text(original)
            verdict = "killed" if code != 0 else "SURVIVED"
            if code == 0:
                survived.append(mutation.piece)
            print(f"{verdict:8} {seconds:5.0f}s  {mutation.piece}  <- {', '.join(t.split('::')[-1] for t in mutation.tests)}",
                  flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tree.parent, ignore_errors=True)
    print(f"mutation_check: killed={len(chosen) - len(survived)} survived={len(survived)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
