"""A python-grader worker process: confines itself, then runs untrusted `grade(sample, item)` calls.

Started by `sandbox.SandboxPool` as `python -I _sandbox_worker.py CONFIG_JSON` with an empty environment.
Standard library only, and run by path (not `-m`) so nothing of align_trainer is imported into the process
that executes untrusted code.

Confinement, strongest first; each layer is tried independently and what took effect is reported in the
hello frame (`isolation`), because which ones the kernel allows depends on where the trainer runs:

* kernel layers (the security boundary):
  - new network namespace (CLONE_NEWNET): no interface but a down loopback, so no connection anywhere;
  - new mount namespace with fresh size-limited tmpfs on /tmp, /var/tmp, /dev/shm: the only writable
    places are private and vanish with the worker;
  - a dedicated unprivileged uid/gid per worker slot when started as root (RLIMIT_NPROC is ignored for
    root, and root could write anywhere), or a user namespace when not root;
  - rlimits: RLIMIT_AS (memory), RLIMIT_NPROC = 0 (no fork, no threads), RLIMIT_FSIZE, RLIMIT_NOFILE,
    RLIMIT_CORE = 0, RLIMIT_CPU (backstop; the wall-clock limit is enforced by the parent);
  - PR_SET_NO_NEW_PRIVS, not dumpable (no ptrace by siblings), SIGKILL when the trainer dies.
* an audit hook (PEP 578; defence in depth and the fallback where the kernel refuses namespaces): denies
  sockets, process creation, signals to other processes, ctypes, gc introspection, rlimit changes, writes
  outside the private directory and reads of other processes' /proc entries.

Protocol on two private pipes (fds moved away from 0/1/2, which point at /dev/null): frames of a 4-byte
big-endian length and a JSON object. Every request carries a random `id` the response must echo, so a
grader that writes forged frames desynchronises nothing: the parent kills a worker on an unexpected id.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import resource
import struct
import sys
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
MAX_FRAME = 64 * 1024 * 1024
MAX_LOG = 2000
THREAD_CAPS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _libc():  # type: ignore[no-untyped-def]
    import ctypes  # only before the audit hook is installed; the hook denies ctypes afterwards
    return ctypes.CDLL(None, use_errno=True), ctypes


def _expose_python(libc) -> list[str]:  # type: ignore[no-untyped-def]
    """Make the interpreter's own files reachable for the unprivileged worker uid.

    Python may live under a directory only root may enter (pyenv under /root, mode 0700). In our private
    mount namespace such a directory is covered by an empty tmpfs holding bind mounts of just the entries
    on the way to the interpreter's paths; everything else in it stays hidden from the grader.
    """
    import stat

    needed = _interpreter_paths()
    stage_root = "/tmp/.stage"
    covered: dict[str, str] = {}
    exposed: list[str] = []
    for target in sorted(os.path.realpath(p) for p in needed):
        cur = "/"
        for comp in [c for c in target.split("/") if c]:
            nxt = os.path.join(cur, comp)
            if cur not in covered and not os.stat(cur).st_mode & stat.S_IXOTH:
                stage = os.path.join(stage_root, str(len(covered)))
                os.makedirs(stage, mode=0o700)
                if libc.mount(cur.encode(), stage.encode(), None, MS_BIND | MS_REC, None) != 0 or \
                        libc.mount(b"tmpfs", cur.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755") != 0:
                    raise OSError(f"cannot expose {target}: mounting over {cur} failed")
                covered[cur] = stage
                exposed.append(cur)
            if cur in covered and not os.path.lexists(nxt):
                original = os.path.join(covered[cur], comp)
                if os.path.isdir(original):
                    os.mkdir(nxt, 0o755)
                else:
                    open(nxt, "w").close()
                if libc.mount(original.encode(), nxt.encode(), None, MS_BIND | MS_REC, None) != 0:
                    raise OSError(f"cannot expose {target}: bind mount of {nxt} failed")
            cur = nxt
    os.chmod(stage_root, 0o700) if os.path.isdir(stage_root) else None
    return exposed


def _interpreter_paths() -> set[str]:
    needed = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    needed.update(p for p in sys.path if p and os.path.exists(p))
    return needed


def _paths_under_tmp() -> list[str]:
    """Interpreter paths (real paths) that a private tmpfs on /tmp would hide, outermost first, no nesting."""
    paths = _interpreter_paths()
    # both spellings: a venv under /tmp may link to an interpreter elsewhere, and the reverse
    found = sorted(p for p in {os.path.realpath(p) for p in paths} | {os.path.abspath(p) for p in paths}
                   if p.startswith("/tmp/"))
    out: list[str] = []
    for path in found:
        if not any(path == kept or path.startswith(kept + "/") for kept in out):
            out.append(path)
    return out


def _restore_under_tmp(libc, old_tmp: int, paths: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Bind-mount `paths` from the old /tmp (held open as `old_tmp`) into the private tmpfs, read-only."""
    for path in paths:
        rel = os.path.relpath(path, "/tmp")
        source = f"/proc/self/fd/{old_tmp}/{rel}"
        if os.path.isdir(source):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "w").close()
        if libc.mount(source.encode(), path.encode(), None, MS_BIND | MS_REC, None) != 0:
            raise OSError(f"cannot keep {path} visible: bind mount failed")
        libc.mount(None, path.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, None)
    for path in paths:  # the directories created on the way stay traversable, not writable
        parent = os.path.dirname(path)
        while parent not in ("/tmp", "/"):
            os.chmod(parent, 0o755)
            parent = os.path.dirname(parent)


def _confine(cfg: dict) -> tuple[dict, str]:
    """Apply every confinement layer this kernel allows; returns (what took effect, working directory)."""
    import signal

    libc, ctypes = _libc()
    report: dict = {}
    uid = os.getuid()
    root = uid == 0

    def err() -> str:
        return os.strerror(ctypes.get_errno())

    # Namespaces. As root: net + mount. Otherwise a user namespace makes both possible where allowed.
    # (`kernel: false` skips them and the uid change: how the tests exercise what the audit hook holds alone.)
    kernel = cfg.get("kernel", True)
    flags = CLONE_NEWNET | CLONE_NEWNS
    if not kernel:
        ok = False
    elif root:
        ok = libc.unshare(flags) == 0
    else:
        gid = os.getgid()
        ok = libc.unshare(flags | CLONE_NEWUSER) == 0
        if ok:
            try:
                for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"0 {uid} 1"),
                                   ("/proc/self/gid_map", f"0 {gid} 1")):
                    with open(path, "w") as fh:
                        fh.write(text)
            except OSError as exc:
                report["userns_error"] = str(exc)
        report["user_namespace"] = ok
    report["network_namespace"] = ok
    if not ok:
        report["namespace_error"] = err() if kernel else "disabled"

    workdir = ""
    mounted = False
    if ok and libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0:
        opts = f"size={int(cfg['disk_mb'])}m,mode=1777".encode()
        # The interpreter, its venv or the trainer's code may live under /tmp (a CI clone, say): keep a handle on
        # the old /tmp so those paths can be bind-mounted back, read-only, into the private one.
        under_tmp = _paths_under_tmp()
        old_tmp = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY) if under_tmp else -1
        mounted = libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, opts) == 0
        if mounted and under_tmp:
            _restore_under_tmp(libc, old_tmp, under_tmp)
        if old_tmp >= 0:
            os.close(old_tmp)
        if mounted:
            for extra in (b"/var/tmp", b"/dev/shm"):
                if os.path.isdir(extra):
                    libc.mount(b"tmpfs", extra, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=1777")
            workdir = "/tmp/grader"
            if root and cfg.get("uid") is not None:
                report["exposed"] = _expose_python(libc)
        else:
            report["mount_error"] = err()
    report["private_tmp"] = mounted
    if not workdir:
        # No private tmpfs: a fresh directory under the pool's base, which only this worker's uid can enter.
        workdir = os.path.join(cfg["base_dir"], f"slot-{cfg['slot']}-{os.getpid()}")
    os.makedirs(workdir, mode=0o700, exist_ok=True)

    # A dedicated unprivileged uid when root: root ignores RLIMIT_NPROC and may write anywhere.
    target = cfg.get("uid") if root and kernel else None
    if target is not None:
        os.chown(workdir, target, target)
        os.setgroups([])
        os.setresgid(target, target, target)
        os.setresuid(target, target, target)
    report["uid"] = os.getuid()
    report["dropped_root"] = root and os.getuid() != 0

    # rlimits after the uid change: RLIMIT_NPROC = 0 then forbids fork and threads for that uid.
    mem = int(cfg["memory_mb"]) * 1024 * 1024
    limits = {"RLIMIT_AS": mem, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": int(cfg["disk_mb"]) * 1024 * 1024,
              "RLIMIT_NOFILE": 64, "RLIMIT_CPU": int(cfg["cpu_seconds"]), "RLIMIT_NPROC": 0}
    applied = []
    for name, value in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            applied.append(name)
        except (ValueError, OSError):
            pass
    report["rlimits"] = applied
    report["nproc_enforced"] = "RLIMIT_NPROC" in applied and os.getuid() != 0

    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)  # after setuid: a uid change clears it
    if os.getppid() != cfg["parent_pid"]:  # the trainer died before PDEATHSIG was armed
        os._exit(0)
    os.chdir(workdir)
    # Nothing of the trainer's environment remains (clear() unsets in libc's environ too) except the thread
    # caps the pool set: BLAS libraries read them at load time and would fail to start threads otherwise.
    keep = {k: v for k, v in os.environ.items() if k in THREAD_CAPS}
    os.environ.clear()
    os.environ.update(keep)
    return report, workdir


def _install_audit_hook(workdir: str) -> None:
    """Deny what the grader has no business doing. Closure over immutable values only, no global state."""
    deny_prefix = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
                   "os.system", "os.kill", "os.killpg", "pty.", "ctypes.", "gc.get_", "resource.setrlimit",
                   "resource.prlimit", "sys.remote_exec", "_posixsubprocess.", "os.startfile", "winreg.",
                   "webbrowser.", "ftplib.", "smtplib.", "telnetlib.", "urllib.", "http.", "imaplib.",
                   "nntplib.", "poplib.")
    path_events = frozenset({"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                             "os.chmod", "os.chown", "os.truncate", "os.utime", "os.setxattr", "os.removexattr",
                             "os.chflags", "os.lchflags", "os.lchmod", "os.mkfifo", "os.mknod", "shutil.rmtree",
                             "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move"})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    root = os.path.realpath(workdir) + os.sep
    self_proc = (f"/proc/{os.getpid()}/", "/proc/self/", "/proc/thread-self/", "/proc/cpuinfo", "/proc/meminfo")
    realpath = os.path.realpath
    fspath = os.fspath

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an fd already opened (and checked) by us
        try:
            text = fspath(path)  # type: ignore[arg-type]
            if isinstance(text, bytes):
                text = text.decode("utf-8", "surrogateescape")
            return (realpath(text) + os.sep).startswith(root) or text == "/dev/null"
        except Exception:
            return False

    def hook(event: str, args: tuple) -> None:
        if event.startswith(deny_prefix):
            raise PermissionError(f"sandbox: {event} is not allowed in a python grader")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                      (isinstance(flags, int) and flags & write_flags)
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} is not allowed (only the working directory)")
            if isinstance(path, str) and path.startswith("/proc/") and not path.startswith(self_proc):
                raise PermissionError(f"sandbox: reading {path} is not allowed")
        elif event in path_events:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg):
                    raise PermissionError(f"sandbox: {event} outside the working directory is not allowed")
        elif event == "object.__setattr__" and len(args) > 1 and args[1] in ("__code__", "cell_contents"):
            raise PermissionError("sandbox: replacing code objects is not allowed")

    sys.addaudithook(hook)


def _as_number(value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, numbers.Real):
        raise TypeError(f"grade() must return a number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"grade() returned {out}, not a finite number")
    return out


class _Channel:
    def __init__(self, rfd: int, wfd: int):
        self.rfd, self.wfd = rfd, wfd

    def _read_exact(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            chunk = os.read(self.rfd, n - got)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def recv(self) -> dict:
        (size,) = struct.unpack(">I", self._read_exact(4))
        if size > MAX_FRAME:
            raise EOFError
        return json.loads(self._read_exact(size))

    def send(self, obj: dict) -> None:
        data = json.dumps(obj, allow_nan=True, default=str).encode()
        data = struct.pack(">I", len(data)) + data
        while data:
            data = data[os.write(self.wfd, data):]


def _serve(chan: _Channel) -> None:
    graders: dict[str, dict] = {}
    while True:
        req = chan.recv()
        rid = req.get("id")
        captured = io.StringIO()
        out: dict = {"id": rid}
        try:
            if req["op"] == "load":
                namespace: dict = {"__name__": "grader", "__builtins__": __builtins__}
                sys.stdout = sys.stderr = captured
                exec(compile(req["source"], "<grader>", "exec"), namespace)
                if not callable(namespace.get("grade")):
                    raise TypeError("source does not define grade(sample, item)")
                graders[req["key"]] = namespace
                out.update(ok=True)
            else:
                grade = graders[req["key"]]["grade"]
                sys.stdout = sys.stderr = captured
                out.update(ok=True, value=_as_number(grade(req["sample"], req["item"])))
        except MemoryError:
            out.update(ok=False, error_type="MemoryError", error="grader exceeded its memory limit")
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: one bad call never ends the worker
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            out.update(ok=False, error_type=type(exc).__name__, error=("".join(tb[-3:]))[-MAX_LOG:])
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        logs = captured.getvalue()
        if logs:
            out["logs"] = logs[-MAX_LOG:]
        chan.send(out)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    # Private protocol fds; 0/1/2 become /dev/null so print() or os.write(1, ...) cannot reach the parent.
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    chan = _Channel(rfd, wfd)
    try:
        report, workdir = _confine(cfg)
    except Exception as exc:  # refuse to run untrusted code half-confined
        chan.send({"id": "hello", "ok": False, "error": f"sandbox setup failed: {exc!r}"})
        return
    # ctypes stays imported (numpy imports it): re-running its module would dlopen, which the hook denies;
    # every foreign call, dlopen or raw memory access through it is an audited event the hook refuses.
    _install_audit_hook(workdir)
    report["audit_hook"] = True
    chan.send({"id": "hello", "ok": True, "isolation": report})
    try:
        _serve(chan)
    except EOFError:
        pass


if __name__ == "__main__":
    main()
