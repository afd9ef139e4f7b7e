"""Hostile python graders: each is contained, recorded as an error with reward 0, and the run goes on."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest
from pydantic import TypeAdapter

from align_api.graders import Grader as GraderSpec
from align_trainer.graders import Grader
from align_trainer.graders.python_grader import PythonScorer
from align_trainer.graders.jail import JailLimits, JailPool

from .jail_support import require_kernel_layer

SPEC = TypeAdapter(GraderSpec)
GOOD = "def grade(sample, item):\n    return 1.0 if sample['output_text'] == item['answer'] else 0.0\n"


@pytest.fixture(scope="module")
def pool() -> Iterator[JailPool]:
    p = JailPool(JailLimits(timeout=1.5, memory_mb=512, workers=2))
    yield p
    p.close()


def run(pool: JailPool, source: str, n: int = 2) -> list:
    spec = SPEC.validate_python({"type": "python", "name": "hostile", "source": source})
    grader = Grader(spec, PythonScorer(spec, pool=pool))
    results = grader.grade_batch([{"answer": "a"}] * n, ["a"] * n)
    # the run continues: a well-behaved grader right after works on the same pool
    good = SPEC.validate_python({"type": "python", "name": "good", "source": GOOD})
    after = Grader(good, PythonScorer(good, pool=pool)).grade_batch([{"answer": "a"}, {"answer": "b"}], ["a", "a"])
    assert [r.reward for r in after] == [1.0, 0.0] and not any(r.failed for r in after)
    return results


#: why a hostile grader was stopped (the error it got), by the layer that stopped it
DENIED = r"PermissionError: grader jail: "  # the audit hook refused the call (open, socket, fork, kill, ...)
NO_NETWORK = rf"{DENIED}(socket\.\w+|urllib\.Request) is not allowed"
DENIED_WRITE = rf"{DENIED}writing '[^']+' is not allowed"
DENIED_READ = rf"{DENIED}reading '[^']+' is not allowed"
NO_PROCESS = rf"{DENIED}(os\.fork|os\.system|os\.kill|subprocess\.Popen|ctypes\.dlopen) is not allowed"
NO_THREAD = r"RuntimeError: can't start new thread"  # RLIMIT_NPROC: the kernel refused the clone()


def assert_contained(results: list, flag: str, reason: str) -> None:
    """Every result failed with `flag`, and for the expected reason (a regex over the recorded error): a grader
    stopped for some other runtime error would not show that this layer holds."""
    for r in results:
        assert r.reward == 0.0 and r.failed, r
        assert r.errors.get(flag), (flag, r.errors, r.details)
        assert re.search(reason, str(r.details.get("error", ""))), (reason, r.details)


def test_infinite_loop_hits_the_wall_clock_limit(pool: JailPool) -> None:
    start = time.monotonic()
    results = run(pool, "def grade(sample, item):\n    while True:\n        pass\n")
    assert_contained(results, "unresponsive_reward_error", r"exceeded the [0-9.]+s wall-clock limit")
    assert time.monotonic() - start < 10  # 2 samples in parallel, 1.5 s each, plus restarts


@pytest.mark.parametrize("bomb", [
    "x = bytearray(64 * 1024 ** 3)",
    "x = []\n    while True:\n        x.append(bytearray(50 * 1024 ** 2))",
])
def test_memory_bomb(pool: JailPool, bomb: str) -> None:
    results = run(pool, f"def grade(sample, item):\n    {bomb}\n    return 1.0\n")
    # whichever limit hits first (RLIMIT_AS, or the clock on a busy machine), it is contained and recorded
    for r in results:
        assert r.reward == 0.0 and r.failed, r
        assert "memory limit" in str(r.details) or r.errors.get("unresponsive_reward_error"), r.details


def test_fork_bomb(pool: JailPool) -> None:
    src = "import os\ndef grade(sample, item):\n    while True:\n        os.fork()\n"
    assert_contained(run(pool, src), "python_grader_runtime_error", NO_PROCESS)
    src = "import subprocess\ndef grade(sample, item):\n    subprocess.run(['sh', '-c', ':(){ :|:& };:'])\n    return 1\n"
    assert_contained(run(pool, src), "python_grader_runtime_error", NO_PROCESS)


def test_threads_and_processes_are_refused_by_the_kernel_too(pool: JailPool) -> None:
    if not pool.isolation:
        run(pool, GOOD)
    require_kernel_layer(bool(pool.isolation.get("nproc_enforced")), "RLIMIT_NPROC cannot be enforced here")
    src = "import threading\ndef grade(sample, item):\n    threading.Thread(target=print).start()\n    return 1\n"
    assert_contained(run(pool, src), "python_grader_runtime_error", NO_THREAD)


def test_network_connection_to_a_local_listener(pool: JailPool) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        for src in (f"import socket\ndef grade(sample, item):\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return 1\n",
                    f"import urllib.request\ndef grade(sample, item):\n    urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)\n    return 1\n"):
            assert_contained(run(pool, src), "python_grader_runtime_error", NO_NETWORK)
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()


def test_secrets_in_the_environment_are_not_visible(pool: JailPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_JUDGE_API_KEY", "sk-very-secret")
    src = ("import os\ndef grade(sample, item):\n"
           "    seen = str(dict(os.environ))\n"
           "    try:\n        seen += open('/proc/self/environ').read()\n"
           "    except OSError:\n        pass  # not dumpable: the kernel refuses even this\n"
           "    return 1.0 if 'sk-very-secret' in seen or 'ALIGN_' in seen else 0.0\n")
    spec = SPEC.validate_python({"type": "python", "name": "env", "source": src})
    result = Grader(spec, PythonScorer(spec, pool=pool)).grade({}, "x")
    assert result.reward == 0.0 and not result.failed, result.details
    parent = f"def grade(sample, item):\n    return 1.0 if 'sk-very-secret' in open('/proc/{os.getpid()}/environ').read() else 0.0\n"
    assert_contained(run(pool, parent), "python_grader_runtime_error", DENIED_READ)


def test_writing_outside_its_directory(pool: JailPool, tmp_path: Path) -> None:
    targets = [tmp_path / "pwned.txt", Path("/tmp") / f"align-pwned-{os.getpid()}.txt"]
    for target in targets:
        src = f"def grade(sample, item):\n    open({str(target)!r}, 'w').write('x')\n    return 1.0\n"
        assert_contained(run(pool, src), "python_grader_runtime_error", DENIED_WRITE)
        assert not target.exists()
    # its own private directory is writable
    src = "def grade(sample, item):\n    open('scratch.txt', 'w').write('ok')\n    return len(open('scratch.txt').read())\n"
    spec = SPEC.validate_python({"type": "python", "name": "scratch", "source": src})
    assert Grader(spec, PythonScorer(spec, pool=pool)).grade({}, "x").reward == 2.0


@pytest.mark.parametrize("body, reason", [("import os\n    os._exit(3)", "exited with code 3"),
                                          ("import sys\n    sys.exit(0)", "SystemExit: 0"),
                                          ("raise KeyboardInterrupt", "KeyboardInterrupt"),
                                          ("import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)", NO_PROCESS)])
def test_exit_and_crash(pool: JailPool, body: str, reason: str) -> None:
    assert_contained(run(pool, f"def grade(sample, item):\n    {body}\n"), "python_grader_runtime_error", reason)


@pytest.mark.parametrize("value", ["float('nan')", "float('inf')", "'1.0'", "None", "[1]", "{'score': 1}"])
def test_nan_and_non_numbers(pool: JailPool, value: str) -> None:
    assert_contained(run(pool, f"def grade(sample, item):\n    return {value}\n"), "python_grader_runtime_error",
                     r"not a finite number|must return a number")


def test_forged_protocol_frames_do_not_fake_later_results(pool: JailPool) -> None:
    src = ("import os, json, struct\ndef grade(sample, item):\n"
           "    body = json.dumps({'id': 'x', 'ok': True, 'value': 99.0}).encode()\n"
           "    for fd in range(3, 12):\n"
           "        try:\n            os.write(fd, struct.pack('>I', len(body)) + body)\n"
           "        except OSError:\n            pass\n    return 0.5\n")
    results = run(pool, src)
    assert all(r.reward in (0.0, 0.5) for r in results)


def test_errors_are_counted(pool: JailPool) -> None:
    before = pool.stats["errors"]
    run(pool, "def grade(sample, item):\n    raise ValueError('boom')\n", n=3)
    assert pool.stats["errors"] >= before + 3


def test_isolation_layers_when_root(pool: JailPool) -> None:
    run(pool, GOOD)
    iso = pool.isolation
    assert iso["audit_hook"] and "RLIMIT_AS" in iso["rlimits"]
    if os.getuid() == 0 and iso.get("network_namespace"):
        assert iso["dropped_root"] and iso["uid"] != 0 and iso["nproc_enforced"]
        assert iso["filesystem"] == "pivot_root" and iso["proc"] == "private" and iso["pid_namespace"]


@pytest.fixture(scope="module")
def hook_only_pool() -> Iterator[JailPool]:
    """No namespaces, no uid change: what a restricted pod that may not unshare gets (here still as root, so
    not even RLIMIT_NPROC binds: the audit hook alone must hold)."""
    p = JailPool(JailLimits(timeout=1.5, memory_mb=512, workers=1, kernel_isolation=False))
    yield p
    p.close()


def test_audit_hook_alone_contains_network_writes_processes_and_proc(hook_only_pool: JailPool,
                                                                      tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.3)
    target = tmp_path / "pwned.txt"
    hostile = [
        (f"import socket\ndef grade(s, i):\n    socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}))\n    return 1\n", NO_NETWORK),
        (f"def grade(s, i):\n    open({str(target)!r}, 'w').write('x')\n    return 1\n", DENIED_WRITE),
        ("import os\ndef grade(s, i):\n    os.fork()\n    return 1\n", NO_PROCESS),
        ("import subprocess\ndef grade(s, i):\n    subprocess.run(['true'])\n    return 1\n", NO_PROCESS),
        ("import os\ndef grade(s, i):\n    os.system('true')\n    return 1\n", NO_PROCESS),
        (f"def grade(s, i):\n    return len(open('/proc/{os.getpid()}/environ').read())\n", DENIED_READ),
        ("import ctypes\ndef grade(s, i):\n    return ctypes.CDLL(None).getpid()\n", DENIED),
    ]
    try:
        for src, reason in hostile:
            assert_contained(run(hook_only_pool, src, n=1), "python_grader_runtime_error", reason)
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()
    assert not target.exists()
    assert hook_only_pool.isolation["network_namespace"] is False and hook_only_pool.isolation["audit_hook"]


def test_pool_works_when_the_interpreter_lives_under_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CI clone's venv under /tmp must stay visible to workers behind their private /tmp (regression)."""
    import subprocess
    import sys

    venv = Path("/tmp") / f"align-venv-{os.getpid()}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    try:
        monkeypatch.setattr(sys, "executable", str(venv / "bin" / "python"))
        local = JailPool(JailLimits(timeout=5, memory_mb=512, workers=1))
        try:
            good = SPEC.validate_python({"type": "python", "name": "good", "source": GOOD})
            results = Grader(good, PythonScorer(good, pool=local)).grade_batch([{"answer": "a"}], ["a"])
            assert results[0].reward == 1.0 and not results[0].failed, results[0].details
        finally:
            local.close()
    finally:
        subprocess.run(["rm", "-rf", str(venv)], check=False)


def test_no_worker_survives_close_and_a_closed_pool_refuses_calls() -> None:
    import threading

    from tests.conftest import grader_workers
    before = set(grader_workers())  # a module-scoped pool of this file may be running
    with JailPool(JailLimits(timeout=5, memory_mb=512, workers=2)) as pool:
        results = pool.map(GOOD, [({"output_text": "a"}, {"answer": "a"})] * 2)
        assert [r.value for r in results] == [1.0, 1.0]
        started = set(grader_workers()) - before
        assert len(started) >= 2, started  # both workers run
        children = [w.proc.pid for w in pool._workers if w.proc is not None]
    assert not set(grader_workers()) & started  # killed by close (the context manager's exit) ...
    assert len(children) == 2 and not any(Path(f"/proc/{pid}").exists() for pid in children)  # ... and reaped
    pool.close()  # idempotent
    assert pool.run(GOOD, {"output_text": "a"}, {"answer": "a"}).error_type == "JailError"
    # close() while a call is starting its worker: the new worker must not outlive the pool either
    racing = JailPool(JailLimits(timeout=5, memory_mb=512, workers=1))
    call = threading.Thread(target=racing.run, args=(GOOD, {"output_text": "a"}, {"answer": "a"}))
    call.start()
    racing.close()
    call.join(timeout=60)
    assert not set(grader_workers()) - before


def test_the_process_wide_pool_closes_on_demand_and_restarts() -> None:
    from align_trainer.graders import jail

    from tests.conftest import grader_workers
    before = set(grader_workers())
    shared = jail.get_pool()
    assert shared.run(GOOD, {"output_text": "a"}, {"answer": "a"}).value == 1.0
    assert set(grader_workers()) - before
    jail.close_pool()
    assert not set(grader_workers()) - before
    fresh = jail.get_pool()
    assert fresh is not shared and fresh.run(GOOD, {"output_text": "b"}, {"answer": "a"}).value == 0.0
    jail.close_pool()
