"""A reusable pool of confined worker processes for untrusted python graders.

Each worker is a confined fork server (`_jail_worker.py`): every call runs in a fresh child forked from a
snapshot that has the grader compiled and its allowed libraries imported, so no state passes between calls.
The worker enforces each call's wall-clock limit; the pool keeps a backstop deadline a few seconds later, and
a worker that hangs, dies, breaks the protocol or cannot confine itself is killed and replaced on the next
call. A failed call returns an error instead of a value: the pool never raises for something the grader did.
See `_jail_worker.py` and `_jail_rootfs.py` for the confinement layers.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import _jail_frames as frames

WORKER = Path(__file__).with_name("_jail_worker.py")
#: The longest reply frame the pool reads from a worker.
MAX_REPLY = 16 * 1024 * 1024

ENV_TIMEOUT = "ALIGN_PYTHON_GRADER_TIMEOUT"
ENV_MEMORY_MB = "ALIGN_PYTHON_GRADER_MEMORY_MB"
ENV_WORKERS = "ALIGN_PYTHON_GRADER_WORKERS"
ENV_UID_BASE = "ALIGN_PYTHON_GRADER_UID_BASE"
ENV_LIBRARIES = "ALIGN_PYTHON_GRADER_LIBRARIES"
#: Seconds the pool waits beyond a call's limit before it treats the worker (not the grader) as stuck.
BACKSTOP_SECONDS = 5.0
#: Seconds a worker gets to start, or to load a grader (pre-importing its libraries).
START_SECONDS = 60.0


@dataclass(frozen=True)
class JailLimits:
    """Limits of one python-grader call / worker. Defaults follow OpenAI's python grader where it states them
    (2 GB memory, 1 GB disk) except the time limit, which is per sample here, not per run."""

    timeout: float = 10.0          #: wall-clock seconds per grade() call
    memory_mb: int = 2048          #: RLIMIT_AS of a worker
    disk_mb: int = 256             #: private tmpfs size and RLIMIT_FSIZE
    workers: int = 2               #: processes in the pool
    uid_base: int = 61000          #: worker slot i runs as uid/gid uid_base + i when the trainer is root
    max_calls: int = 5000          #: recycle a worker after this many calls (bounds leaks in the fork server)
    kernel_isolation: bool = True  #: namespaces + dedicated uid when allowed (False: tests of the hook alone)
    libraries: tuple[str, ...] = ()  #: importable third-party distributions (empty: the worker's ALLOWED_LIBRARIES)

    @classmethod
    def from_env(cls) -> "JailLimits":
        env = os.environ
        return cls(timeout=float(env.get(ENV_TIMEOUT, cls.timeout)),
                   memory_mb=int(env.get(ENV_MEMORY_MB, cls.memory_mb)),
                   workers=int(env.get(ENV_WORKERS, min(cls.workers, os.cpu_count() or 1))),
                   uid_base=int(env.get(ENV_UID_BASE, cls.uid_base)),
                   libraries=tuple(n.strip() for n in env.get(ENV_LIBRARIES, "").split(",") if n.strip()))


@dataclass
class CallResult:
    """One grade() call: a finite value, or an error (kind = OpenAI's error flag it maps to)."""

    value: float | None
    error: str | None = None
    error_type: str | None = None      #: Python exception name, or Timeout / WorkerDied / JailError
    server_error: bool = False         #: the jail failed (python_grader_server_error), not the grader code
    duration: float = 0.0
    logs: str | None = None
    degraded: list[str] = field(default_factory=list)  #: confinement layers missing where this call ran


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen | None = None
    loaded: set[str] = field(default_factory=set)
    calls: int = 0
    isolation: dict[str, Any] = field(default_factory=dict)


#: (interpreter, libraries) -> the grader's view a worker computed (paths to expose), reused by later workers.
_VIEWS: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}


class JailError(RuntimeError):
    pass


class JailPool:
    """Run `grade(sample, item)` from untrusted sources in confined, reusable worker processes."""

    def __init__(self, limits: JailLimits | None = None):
        self.limits = limits or JailLimits.from_env()
        self._base = Path(tempfile.mkdtemp(prefix="align-grader-"))
        os.chmod(self._base, 0o711)  # workers of other uids create their own 0700 directory inside
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for slot in range(max(1, self.limits.workers)):
            self._idle.put(_Worker(slot))
        self._workers = list(self._idle.queue)
        self._closed = False
        self.isolation: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grader-spawn")
        self.stats = {"calls": 0, "errors": 0, "timeouts": 0, "restarts": 0}
        self._view_key = (sys.executable, self.limits.libraries)

    # --- public ------------------------------------------------------------------------------------------
    def run(self, source: str, sample: Any, item: Any) -> CallResult:
        """Grade one case. Never raises for anything the grader does."""
        worker = self._idle.get()
        try:
            result = self._call(worker, source, sample, item)
        finally:
            self._idle.put(worker)
        with self._lock:
            self.stats["calls"] += 1
            if result.error is not None:
                self.stats["errors"] += 1
            if result.error_type == "Timeout":
                self.stats["timeouts"] += 1
        return result

    def map(self, source: str, cases: Sequence[tuple[Any, Any]]) -> list[CallResult]:
        """Grade many (sample, item) cases in parallel over the pool's workers, in order."""
        if len(cases) <= 1 or len(self._workers) == 1:
            return [self.run(source, s, i) for s, i in cases]
        with ThreadPoolExecutor(max_workers=len(self._workers)) as pool:
            return list(pool.map(lambda case: self.run(source, *case), cases))

    def close(self) -> None:
        """Kill and reap every worker (and what it forked: each worker is its own process group). Idempotent;
        a worker that a concurrent call is starting is killed by that call (see `_start`)."""
        with self._lock:
            self._closed = True
        for worker in self._workers:
            self._kill(worker)
        self._spawner.shutdown(wait=True)
        shutil.rmtree(self._base, ignore_errors=True)

    def __enter__(self) -> "JailPool":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # --- one call ----------------------------------------------------------------------------------------
    def _call(self, worker: _Worker, source: str, sample: Any, item: Any) -> CallResult:
        start = time.monotonic()
        key = hashlib.sha256(source.encode()).hexdigest()[:32]
        try:
            if worker.proc is None or worker.proc.poll() is not None or worker.calls >= self.limits.max_calls:
                self._start(worker)
            if key not in worker.loaded:
                reply = self._request(worker, {"op": "load", "key": key, "source": source},
                                      time.monotonic() + START_SECONDS)
                if not reply.get("ok"):
                    return self._failed(worker, reply, start)
                worker.loaded.add(key)
            worker.calls += 1
            # the worker enforces the limit itself; this deadline only catches a stuck worker
            reply = self._request(worker, {"op": "grade", "key": key, "sample": sample, "item": item},
                                  time.monotonic() + self.limits.timeout + BACKSTOP_SECONDS)
        except _CallFailed as exc:
            self._kill(worker)
            return CallResult(None, str(exc), exc.kind, exc.kind == "JailError", time.monotonic() - start,
                              degraded=degraded(worker.isolation))
        if not reply.get("ok"):
            return self._failed(worker, reply, start)
        value = reply.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value or \
                value in (float("inf"), float("-inf")):  # re-checked here: the worker is not trusted
            return CallResult(None, f"grade() returned {value!r}, not a finite number", "ValueError",
                              duration=time.monotonic() - start, logs=reply.get("logs"),
                              degraded=degraded(worker.isolation))
        return CallResult(float(value), duration=time.monotonic() - start, logs=reply.get("logs"),
                          degraded=degraded(worker.isolation))

    @staticmethod
    def _failed(worker: _Worker, reply: dict, start: float) -> CallResult:
        return CallResult(None, str(reply.get("error") or "grader failed")[:2000], str(reply.get("error_type") or "Error"),
                          duration=time.monotonic() - start, logs=reply.get("logs"),
                          degraded=degraded(worker.isolation))

    def _request(self, worker: _Worker, body: dict, deadline: float) -> dict:
        rid = secrets.token_hex(16)
        proc = worker.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(frames.frame({"id": rid, **body}))
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _CallFailed("WorkerDied", self._death(worker)) from None
        reply = self._read_frame(worker, deadline)
        if reply.get("id") != rid:
            raise _CallFailed("ProtocolError", "grader worker sent an unexpected frame")
        return reply

    def _read_frame(self, worker: _Worker, deadline: float) -> dict:
        proc = worker.proc
        assert proc is not None and proc.stdout is not None
        reply = frames.read_frame(proc.stdout.fileno(), deadline, MAX_REPLY)
        if reply == "timeout":
            raise _CallFailed("Timeout", f"grade() exceeded the {self.limits.timeout:g}s wall-clock limit")
        if reply == "eof":
            raise _CallFailed("WorkerDied", self._death(worker))
        if not isinstance(reply, dict):
            what = "an oversized" if reply == "oversized" else "a malformed"
            raise _CallFailed("ProtocolError", f"grader worker sent {what} frame")
        return reply

    # --- lifecycle ---------------------------------------------------------------------------------------
    def _start(self, worker: _Worker) -> None:
        if self._closed:
            raise _CallFailed("JailError", "the grader jail is closed")
        if worker.proc is not None:
            self._kill(worker)
            with self._lock:
                self.stats["restarts"] += 1
        cfg = {"slot": worker.slot, "base_dir": str(self._base), "memory_mb": self.limits.memory_mb,
               "disk_mb": self.limits.disk_mb, "uid": self.limits.uid_base + worker.slot, "parent_pid": os.getpid(),
               "timeout": self.limits.timeout, "libraries": list(self.limits.libraries),
               "kernel": self.limits.kernel_isolation, "visible": _VIEWS.get(self._view_key)}
        # Thread caps are set so numpy/BLAS never try to start threads (RLIMIT_NPROC = 0 forbids them);
        # the worker clears even these before running grader code. Nothing else of our environment passes.
        env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        # Spawned from one long-lived thread: the worker's PR_SET_PDEATHSIG fires when the *thread* that
        # forked it exits, and calls may come from short-lived executor threads.
        try:
            proc = self._spawner.submit(
                subprocess.Popen, [sys.executable, "-I", "-B", str(WORKER), json.dumps(cfg)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd="/", start_new_session=True,
                close_fds=True).result()
        except RuntimeError:  # the spawner was shut down: close() ran meanwhile
            raise _CallFailed("JailError", "the grader jail is closed") from None
        with self._lock:  # close() may have run while this worker started: it must not outlive the pool
            closed = self._closed
            worker.proc = proc
        if closed:
            self._kill(worker)
            raise _CallFailed("JailError", "the grader jail is closed")
        worker.loaded = set()
        worker.calls = 0
        hello = self._read_frame(worker, time.monotonic() + START_SECONDS)
        if not hello.get("ok") or hello.get("id") != "hello":
            raise _CallFailed("JailError", str(hello.get("error") or "grader worker failed to start"))
        worker.isolation = hello.get("isolation") or {}
        if isinstance(hello.get("visible"), dict):  # sent by the worker's own code, before any grader ran
            _VIEWS[self._view_key] = hello["visible"]
        self.isolation = worker.isolation

    def _death(self, worker: _Worker) -> str:
        proc = worker.proc
        try:
            code = proc.wait(timeout=2) if proc is not None else None
        except subprocess.TimeoutExpired:
            return "grader worker closed its pipe"
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            return f"grader worker was killed by {name} (e.g. CPU/memory limit or crash)"
        return f"grader process exited with code {code} (os._exit / sys.exit at import time?)"

    def _kill(self, worker: _Worker) -> None:
        proc, worker.proc = worker.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream and stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def degraded(isolation: dict[str, Any]) -> list[str]:
    """What a grader can still see or do because a kernel layer could not be set up here (empty: none)."""
    out = []
    if isolation.get("filesystem") not in ("pivot_root", "chroot"):
        out.append("no private root filesystem: reading host files and other processes' /proc is refused by the "
                   "audit hook only, and file metadata (os.stat) stays visible")
    if not isolation.get("network_namespace"):
        out.append("no network namespace: connections are refused by the audit hook only")
    if not isolation.get("nproc_enforced"):
        out.append("running as root: RLIMIT_NPROC does not bind; forks and threads are refused by the audit hook only")
    return out


class _CallFailed(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


_POOL: JailPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> JailPool:
    """The process-wide pool (created on first use, closed by `close_pool()` or at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = JailPool()
        return _POOL


@atexit.register
def close_pool() -> None:
    """Close the process-wide pool now (its workers are killed and reaped); the next `get_pool()` starts a new
    one. Tests call it so that no idle worker outlives the tests that used it."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.close()
