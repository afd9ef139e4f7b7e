"""What a python grader can see and keep: host files, other processes, state between calls.

Two pools: the full jail (new root, PID namespace, where this kernel allows it: as root here) and the
audit-hook-only fallback of a pod that may not create namespaces. A hostile grader must be contained by both;
where the kernel layer exists, tests also use reads the audit hook never sees (os.stat, lxml's C parser).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from pydantic import TypeAdapter

from align_api.graders import Grader as GraderSpec
from align_trainer.graders import Grader
from align_trainer.graders import jail as jail_mod
from align_trainer.graders.python_grader import PythonScorer
from align_trainer.graders.jail import JailLimits, JailPool

from .jail_support import KERNEL_LAYER_REQUIRED, require_kernel_layer

SPEC = TypeAdapter(GraderSpec)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def full() -> Iterator[JailPool]:
    p = JailPool(JailLimits(timeout=5, memory_mb=768, workers=2))
    yield p
    p.close()


@pytest.fixture(scope="module")
def hook_only() -> Iterator[JailPool]:
    p = JailPool(JailLimits(timeout=5, memory_mb=768, workers=1, kernel_isolation=False))
    yield p
    p.close()


@pytest.fixture(scope="module")
def trainer_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stands in for the pod's /etc/align/job.yaml (world-readable, like a mounted ConfigMap)."""
    path = tmp_path_factory.mktemp("etc-align") / "job.yaml"
    path.write_text("algorithm: grpo\nsecrets: {judgeApiKey: sk-config-secret}\n")
    path.chmod(0o644)
    path.parent.chmod(0o755)
    return path


def grade(pool: JailPool, source: str, n: int = 1) -> list:
    spec = SPEC.validate_python({"type": "python", "name": "probe", "source": source})
    return Grader(spec, PythonScorer(spec, pool=pool)).grade_batch([{"i": k} for k in range(n)], ["x"] * n)


def namespaces(pool: JailPool) -> bool:
    """Whether this kernel let the worker create its namespaces (root here; a restricted pod may not)."""
    grade(pool, "def grade(s, i):\n    return 1\n")
    return bool(pool.isolation.get("mount_namespace"))


def require_namespaces(pool: JailPool) -> None:
    require_kernel_layer(namespaces(pool), f"namespaces refused here: {pool.isolation.get('namespace_error')}")


def host_files(config: Path) -> list[str]:
    return ["/etc/passwd", "/etc/hostname", str(config), str(REPO / "pyproject.toml"),
            jail_mod.__file__, str(Path(jail_mod.__file__).with_name("_jail_worker.py"))]


READERS = {
    "open": "open(PATH).read()",
    "os.open": "os.read(os.open(PATH, os.O_RDONLY), 100)",
    "pathlib": "pathlib.Path(PATH).read_bytes()",
    "io.open_code": "io.open_code(PATH).read()",
    "linecache": "linecache.getline(PATH, 1) or (_ for _ in ()).throw(OSError('empty'))",
    "numpy": "numpy.fromfile(PATH, dtype=numpy.uint8)",
    "listdir": "os.listdir(os.path.dirname(PATH))",
    "sqlite3": "sqlite3.connect(PATH).execute('select 1').fetchall()",
    "symlink": "os.symlink(PATH, 'link')\n    open('link').read()",
    "/proc/self/root": "open('/proc/self/root' + PATH).read()",
    "/proc/1/root": "open('/proc/1/root' + PATH).read()",
}
IMPORTS = "import os, io, pathlib, linecache, sqlite3, numpy\n"


@pytest.mark.parametrize("pool_name", ["full", "hook_only"])
def test_host_and_project_files_and_the_trainer_config_are_unreadable(pool_name: str, trainer_config: Path,
                                                                       request: pytest.FixtureRequest) -> None:
    pool = request.getfixturevalue(pool_name)
    for path in host_files(trainer_config):
        for how, expr in READERS.items():
            src = IMPORTS + f"def grade(s, i):\n    PATH = {path!r}\n    {expr}\n    return 1.0\n"
            [result] = grade(pool, src)
            assert result.reward == 0.0 and result.errors.get("python_grader_runtime_error"), (path, how, result)
            assert "sk-config-secret" not in str(result.details) and "root:x:0" not in str(result.details)


def test_with_a_private_root_host_files_do_not_exist_at_all(full: JailPool, trainer_config: Path) -> None:
    """Kernel containment, not the hook: os.stat is not audited and lxml opens files in C."""
    require_namespaces(full)
    assert full.isolation["filesystem"] in ("pivot_root", "chroot"), full.isolation
    # The project's files, not its directory: a virtualenv inside the checkout (.venv, as scripts/setup.sh makes it)
    # brings its allowed libraries into the view, and so the directories above them.
    paths = host_files(trainer_config) + ["/home", "/var", "/boot", str(REPO / "pyproject.toml"), str(REPO / "api"),
                                          str(REPO / "trainer_image"), f"/proc/{os.getpid()}"]
    src = ("import os\nfrom lxml import etree\ndef grade(s, i):\n"
           f"    seen = [p for p in {paths!r} if os.path.lexists(p)]\n"
           "    for p in ('/etc/passwd', " + repr(str(trainer_config)) + "):\n"
           "        try:\n            etree.parse(p)\n            seen.append(p)\n"
           "        except OSError:\n            pass\n"
           "    print(seen)\n    return float(len(seen))\n")
    [result] = grade(full, src)
    assert result.reward == 0.0 and not result.failed, result
    # what is there: the standard library, allowed libraries (not the trainer's), a private writable /tmp
    src = ("import os, importlib.util, numpy\ndef grade(s, i):\n"
           "    open('/tmp/grader/w', 'w').write('x')\n"
           "    hidden = [m for m in ('torch', 'transformers', 'align_trainer', 'boto3') if importlib.util.find_spec(m)]\n"
           "    return float(not hidden and os.path.exists('/etc/ld.so.cache') and numpy.ones(2).sum() == 2)\n")
    assert [r.reward for r in grade(full, src)] == [1.0]


@pytest.mark.parametrize("pool_name", ["full", "hook_only"])
def test_other_processes_proc_entries_are_invisible(pool_name: str, request: pytest.FixtureRequest) -> None:
    pool = request.getfixturevalue(pool_name)
    trainer = os.getpid()
    for expr in (f"open('/proc/{trainer}/cmdline').read()", f"open('/proc/{trainer}/environ').read()",
                 "open('/proc/1/cmdline').read()", "os.listdir('/proc/1/fd')", "open('/proc/self/../1/environ').read()"):
        [result] = grade(pool, f"import os\ndef grade(s, i):\n    {expr}\n    return 1.0\n")
        assert result.reward == 0.0 and result.failed, (expr, result)
    # its own entries stay readable
    own = "def grade(s, i):\n    return float('grade' in open('/proc/self/status').read() or 1)\n"
    assert [r.reward for r in grade(pool, own)] == [1.0]


def test_proc_lists_only_the_graders_own_processes(full: JailPool) -> None:
    require_namespaces(full)
    assert full.isolation["pid_namespace"] and full.isolation["proc"] == "private", full.isolation
    src = ("import os\ndef grade(s, i):\n"
           "    pids = {int(p) for p in os.listdir('/proc') if p.isdigit()}\n"
           f"    return float(pids == {{1, os.getpid()}} and not os.path.exists('/proc/{os.getpid()}/'))\n")
    assert [r.reward for r in grade(full, src, n=3)] == [1.0] * 3


@pytest.mark.parametrize("pool_name", ["full", "hook_only"])
def test_no_state_passes_between_calls(pool_name: str, request: pytest.FixtureRequest) -> None:
    pool = request.getfixturevalue(pool_name)
    counter = "calls = []\ndef grade(s, i):\n    calls.append(1)\n    return float(len(calls))\n"
    assert [r.reward for r in grade(pool, counter, n=6)] == [1.0] * 6
    files = ("import os\ndef grade(s, i):\n    seen = os.path.exists('state.txt') or os.path.exists('d')\n"
             "    os.makedirs('d/e', exist_ok=True)\n    os.chmod('d', 0)\n    open('state.txt', 'w').write('x')\n"
             "    return float(seen)\n")
    results = grade(pool, files, n=4)
    assert [r.reward for r in results] == [0.0] * 4 and not any(r.failed for r in results), results
    # one grader breaking a library and builtins does not break the next grader on the same workers
    vandal = "import json, builtins\ndef grade(s, i):\n    json.dumps = None\n    builtins.len = lambda x: 99\n    return 0\n"
    grade(pool, vandal, n=2)
    honest = "import json\ndef grade(s, i):\n    return float(len(json.dumps([1])))\n"
    assert [r.reward for r in grade(pool, honest, n=2)] == [3.0, 3.0]


def test_rewards_do_not_depend_on_the_order_of_samples(full: JailPool) -> None:
    """A grader that remembers the first answer it saw would score differently in another order."""
    src = ("first = {}\ndef grade(sample, item):\n"
           "    first.setdefault('answer', sample['output_text'])\n"
           "    return 1.0 if sample['output_text'] == first['answer'] else 0.0\n")
    spec = SPEC.validate_python({"type": "python", "name": "order", "source": src})
    grader = Grader(spec, PythonScorer(spec, pool=full))
    outputs = ["a", "b", "a", "c"]
    forward = {o: r.reward for o, r in zip(outputs, grader.grade_batch([{}] * 4, outputs))}
    backward = {o: r.reward for o, r in zip(outputs[::-1], grader.grade_batch([{}] * 4, outputs[::-1]))}
    assert forward == backward == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_missing_layers_are_named_in_the_result_metadata(full: JailPool, hook_only: JailPool) -> None:
    good = "def grade(s, i):\n    return 1.0\n"
    [weak] = grade(hook_only, good)
    said = " ".join(weak.to_dict()["metadata"]["details"]["jail_degraded"])
    assert "no private root filesystem" in said and "no network namespace" in said
    if KERNEL_LAYER_REQUIRED or (namespaces(full) and full.isolation.get("nproc_enforced")):
        [strong] = grade(full, good)  # every layer present: nothing to name
        assert "details" not in strong.to_dict()["metadata"], (full.isolation, strong.to_dict())


SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(os.getuid() != 0 or not SYSTEM_PYTHON.exists(), reason="needs root to start a worker as nobody")
@pytest.mark.parametrize("uid", [1000, 65534], ids=["chart-trainer-uid", "nobody"])
def test_an_unprivileged_trainer_gets_the_same_view_through_a_user_namespace(uid: int) -> None:
    """A non-root trainer (the chart's trainer UID, and nobody, with the system interpreter it can reach) confines
    its worker through a user namespace: same new root, private /proc, RLIMIT_NPROC binding. (65534 alone hid a
    bug: it is also the overflow uid that geteuid() returns inside a fresh user namespace.)"""
    import json
    import shutil
    import struct
    import subprocess
    import tempfile

    worker = Path(jail_mod.__file__).with_name("_jail_worker.py")
    base = tempfile.mkdtemp(prefix="align-grader-nobody-")  # pytest's tmp_path is private to root
    os.chmod(base, 0o777)
    cfg = {"slot": 0, "base_dir": base, "memory_mb": 512, "disk_mb": 16, "uid": 61000,
           "parent_pid": os.getpid(), "timeout": 5, "libraries": [], "kernel": True}
    proc = subprocess.Popen([str(SYSTEM_PYTHON), "-I", "-B", str(worker), json.dumps(cfg)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, user=uid, group=uid, extra_groups=[], env={}, cwd="/")

    def ask(body: dict | None) -> dict:
        assert proc.stdin is not None and proc.stdout is not None
        if body is not None:
            data = json.dumps(body).encode()
            proc.stdin.write(struct.pack(">I", len(data)) + data)
            proc.stdin.flush()
        (size,) = struct.unpack(">I", proc.stdout.read(4))
        return json.loads(proc.stdout.read(size))

    try:
        hello = ask(None)
        assert hello.get("ok"), hello
        require_kernel_layer(hello["isolation"]["user_namespace"], "no unprivileged user namespaces here: "
                             f"{hello['isolation'].get('namespace_error')}")
        iso = hello["isolation"]
        assert iso["filesystem"] == "pivot_root" and iso["proc"] == "private" and iso["nproc_enforced"], iso
        src = ("import os, threading\ndef grade(s, i):\n"
               "    assert not os.path.exists('/etc/passwd') and not os.path.exists(" + repr(str(REPO)) + ")\n"
               "    assert {p for p in os.listdir('/proc') if p.isdigit()} == {'1', str(os.getpid())}\n"
               "    try:\n        threading.Thread(target=print).start()\n        return 0.0\n"
               "    except RuntimeError:\n        return 1.0\n")
        assert ask({"id": "l", "op": "load", "key": "k", "source": src})["ok"]
        reply = ask({"id": "g", "op": "grade", "key": "k", "sample": {}, "item": {}})
        assert reply.get("value") == 1.0, reply
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_only_the_allowed_libraries_are_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_PYTHON_GRADER_LIBRARIES", "numpy")
    pool = JailPool(JailLimits.from_env())
    try:
        src = ("import importlib.util, numpy\ndef grade(s, i):\n"
               "    return float(importlib.util.find_spec('sympy') is None and numpy.ones(3).sum() == 3)\n")
        rewards = [r.reward for r in grade(pool, src)]
        assert pool.isolation["libraries"] == ["numpy"]
        # without a new root other libraries' files stay on disk (only where the kernel layer may be missing)
        require_kernel_layer(pool.isolation["filesystem"] != "host", "no private root filesystem here")
        assert rewards == [1.0]
    finally:
        pool.close()


def test_an_interpreter_under_tmp_stays_visible_behind_the_private_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI clones (and their .venv) live under /tmp: a read-only bind under /tmp must sit on top of the grader's
    private /tmp, not collide with it (the new root was refused with EEXIST and graders fell back to the hook)."""
    import tempfile

    from align_trainer.graders import _jail_rootfs as rootfs
    probe = Path(tempfile.mkdtemp(prefix="align-venv-under-tmp-", dir="/tmp"))
    probe.chmod(0o755)  # as a virtualenv is
    (probe / "lib").mkdir()
    limits = JailLimits(timeout=5, memory_mb=768, workers=1, libraries=("json",))
    view = rootfs.visible_paths(limits.libraries)
    view["readonly"] = sorted(view["readonly"] + [str(probe)])
    monkeypatch.setitem(jail_mod._VIEWS, (__import__("sys").executable, limits.libraries), view)
    pool = JailPool(limits)
    try:
        [result] = grade(pool, f"import os\ndef grade(s, i):\n    return float(os.path.isdir({str(probe / 'lib')!r}))\n")
        require_namespaces(pool)
        assert pool.isolation["filesystem"] in ("pivot_root", "chroot"), pool.isolation
        assert result.reward == 1.0, result
    finally:
        pool.close()
        import shutil
        shutil.rmtree(probe, ignore_errors=True)


#: import names of the allowed grader libraries (_jail_rootfs.ALLOWED_LIBRARIES: distribution names)
IMPORT_NAMES = {"scikit-learn": "sklearn", "rouge-score": "rouge_score", "pyyaml": "yaml"}


@pytest.mark.parametrize("pool_name", ["full", "hook_only"])
def test_every_installed_allowed_library_imports_in_the_jail(pool_name: str, request: pytest.FixtureRequest) -> None:
    """The jail offers these libraries to graders (as OpenAI's python grader does): each must import there, under
    the grader uid with an empty environment. nltk did not in the full jail: its downloader finds a data directory
    from `~` at import time, and the grader uid had no HOME and no passwd entry ("Could not find a default
    download directory"). A missing library is left out: setup decides what is installed, this test what works."""
    import importlib.util

    from align_trainer.graders._jail_rootfs import ALLOWED_LIBRARIES
    pool = request.getfixturevalue(pool_name)
    names = [IMPORT_NAMES.get(d, d) for d in ALLOWED_LIBRARIES]
    installed = [n for n in names if importlib.util.find_spec(n) is not None]
    assert "nltk" in installed  # a core dependency of the trainer (pyproject): always there to check
    src = (f"import {', '.join(installed)}\n"
           "import os\ndef grade(s, i):\n"
           "    from nltk.tokenize import RegexpTokenizer\n"
           "    return float(len(RegexpTokenizer(r'\\w+').tokenize('two words')))\n")
    [result] = grade(pool, src)
    assert result.reward == 2.0 and not result.failed, result.details
