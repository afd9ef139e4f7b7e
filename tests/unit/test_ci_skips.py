"""CI=true: a skip not on tests/conftest.py's CI_ALLOWED_SKIPS fails the run (issue 23: tests that cannot quietly
weaken). Runs pytest on a probe file in a subprocess with the suite's conftest as a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = '''
import pytest
pytest.importorskip("no_such_module_anywhere") if __name__.endswith("collect") else None


def test_unlisted_skip():
    pytest.skip("some tool is missing")


@pytest.mark.skipif(True, reason="a skip mark")
def test_unlisted_mark():
    pass


@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False


def test_passes():
    pass
'''


def run_probe(tmp_path: Path, name: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / f"{name}.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci is not None else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-n", "0",
                           "-q", "--rootdir", str(tmp_path), str(tmp_path / f"{name}.py")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_skips_stay_skips(tmp_path: Path, ci: str | None) -> None:
    out = run_probe(tmp_path, "test_probe", ci)
    assert out.returncode == 0 and "2 skipped" in out.stdout and "1 xfailed" in out.stdout, out.stdout + out.stderr


def test_under_ci_an_unlisted_skip_fails_and_says_where_to_list_it(tmp_path: Path) -> None:
    out = run_probe(tmp_path, "test_probe", "true")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed" in out.stdout and "1 error" in out.stdout and "1 xfailed" in out.stdout, out.stdout
    assert "CI_ALLOWED_SKIPS" in out.stdout and "some tool is missing" in out.stdout


def test_under_ci_a_skipped_module_fails_too(tmp_path: Path) -> None:
    out = run_probe(tmp_path, "test_probe_collect", "true")
    assert out.returncode != 0 and "no_such_module_anywhere" in out.stdout, out.stdout + out.stderr


def test_every_allowed_skip_names_a_test_file_of_the_suite() -> None:
    from tests.conftest import CI_ALLOWED_SKIPS
    for prefix, words in CI_ALLOWED_SKIPS:
        assert (REPO / prefix.split("::")[0]).is_file() and words, prefix
        assert words in (REPO / prefix.split("::")[0]).read_text(), (prefix, words)
