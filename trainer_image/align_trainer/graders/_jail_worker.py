"""A python-grader worker: confines itself once, then forks a fresh grader process for every call.

Started by `jail.JailPool` as `python -I _jail_worker.py CONFIG_JSON` with an empty environment.
Standard library only, and run by path (not `-m`) so nothing of align_trainer is imported into the process
that executes untrusted code.

The worker is a fork server. It confines itself (below), pre-imports the allowed libraries a grader's source
names when the grader is loaded, and for every `grade` request forks a child that runs the grader's module
code and `grade(sample, item)` from that snapshot, sends one result frame and exits. Nothing a call does
(module globals, caches, monkey-patched libraries, files in the working directory, which the worker wipes after
each call) reaches the next call, so rewards cannot depend on the order of samples. The worker also enforces
the wall-clock limit: a child that overruns is SIGKILLed and the worker stays up.

Confinement, strongest first; each layer is tried independently and what took effect is reported in the
hello frame (`isolation`), because which ones the kernel allows depends on where the trainer runs:

* kernel layers (the security boundary):
  - new network namespace (CLONE_NEWNET): no interface but a down loopback, so no connection anywhere;
  - new PID namespace: the worker is its init, `/proc` lists the grader's processes only;
  - new mount namespace with a new read-only root (`_jail_rootfs.py`): the standard library, the allowed
    grader libraries, shared libraries, a few devices, a private size-limited tmpfs on /tmp; nothing else;
  - a dedicated unprivileged uid/gid per worker slot when started as root (RLIMIT_NPROC is ignored for
    root, and root could write anywhere), or a user namespace when not root;
  - rlimits: RLIMIT_AS (memory), RLIMIT_NPROC = 0 in the grader (no fork, no threads), RLIMIT_FSIZE,
    RLIMIT_NOFILE, RLIMIT_CORE = 0, RLIMIT_CPU per call (backstop of the wall-clock limit);
  - PR_SET_NO_NEW_PRIVS, not dumpable (no ptrace by siblings), SIGKILL when the trainer dies.
* an audit hook (PEP 578, `_jail_hook.py`), installed in each grader child (defence in depth, and the
  fallback where the kernel refuses namespaces): denies sockets, process creation, signals, ctypes, gc
  introspection, rlimit changes, writes outside the working directory, and reads or listings outside the
  paths the grader's root exposes (other processes' /proc entries among them).

Protocol on two private pipes (fds moved away from 0/1/2, which point at /dev/null): frames of a 4-byte
big-endian length and a JSON object. Every request carries a random `id` the response must echo. The grader
child never holds those pipes: it writes its one frame to a private pipe, with a per-call token, and a
forged or second frame is a protocol error of that call only.
"""

from __future__ import annotations

import ast
import io
import json
import math
import numbers
import os
import resource
import secrets
import signal
import sys
import time
import traceback

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
MAX_FRAME = 64 * 1024 * 1024
MAX_LOG = 2000
THREAD_CAPS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")


def _libc():  # type: ignore[no-untyped-def]
    import ctypes  # only outside grader children: their audit hook denies ctypes
    return ctypes.CDLL(None, use_errno=True), ctypes


def _sibling(name: str):  # type: ignore[no-untyped-def]
    """`_jail_<name>.py` next to this file, loaded by path: `-I` keeps this directory off sys.path."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"_jail_{name}.py")
    spec = importlib.util.spec_from_file_location(f"_jail_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_frames = _sibling("frames")  # the wire format, shared with the pool (jail.py)


def _unshare(libc, ctypes, root: bool, report: dict) -> tuple[bool, bool]:  # type: ignore[no-untyped-def]
    """New net + mount (+ PID) namespaces; a user namespace too when not root. Returns (namespaces, pid ns)."""
    base = CLONE_NEWNET | CLONE_NEWNS | (0 if root else CLONE_NEWUSER)
    # Our ids from before the user namespace: inside it, unmapped, geteuid() is the overflow uid (65534).
    uid, gid = os.geteuid(), os.getegid()
    for flags in (base | CLONE_NEWPID, base):
        if not root and not _userns_maps(libc, flags, uid, gid):
            report["namespace_error"] = report.get("namespace_error") or "user namespace cannot map this uid"
            continue
        if libc.unshare(flags) == 0:
            break
        report["namespace_error"] = os.strerror(ctypes.get_errno())
    else:
        return False, False
    report.pop("namespace_error", None)
    if not root:
        _map_user(uid, gid)  # the probe showed it works; a failure now is a bug, not a missing layer
    return True, bool(flags & CLONE_NEWPID)


def _map_user(uid: int, gid: int) -> None:
    for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"0 {uid} 1"),
                       ("/proc/self/gid_map", f"0 {gid} 1")):
        with open(path, "w") as fh:
            fh.write(text)


def _userns_maps(libc, flags: int, uid: int, gid: int) -> bool:  # type: ignore[no-untyped-def]
    """Whether unshare + the uid/gid map work here, tried in a throwaway child: a process left in a user namespace
    without a map runs as the overflow uid, and every file it creates fails with EOVERFLOW."""
    pid = os.fork()
    if pid == 0:
        try:
            ok = libc.unshare(flags) == 0
            if ok:
                _map_user(uid, gid)
        except OSError:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _become_init(libc) -> None:  # type: ignore[no-untyped-def]
    """Fork into the new PID namespace. The parent (outside it) only mirrors the child's end; the child, PID 1
    there, returns. When PID 1 dies the kernel kills every grader process of the namespace."""
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        return
    for fd in range(3, 64):  # keep no end of the protocol pipes open: the trainer must see EOF when PID 1 dies
        try:
            os.close(fd)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def _confine(cfg: dict) -> tuple[dict, str, dict[str, list[str]]]:
    """Apply every confinement layer this kernel allows; returns (what took effect, working dir, readable paths)."""
    libc, ctypes = _libc()
    rootfs = _sibling("rootfs")
    report: dict = {}
    root = os.getuid() == 0
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != cfg["parent_pid"]:  # the trainer died before PDEATHSIG was armed
        os._exit(0)
    # `kernel: false` skips namespaces and the uid change: how the tests exercise what the audit hook holds alone.
    kernel = cfg.get("kernel", True)
    ns, pidns = _unshare(libc, ctypes, root, report) if kernel else (False, False)
    if not kernel:
        report["namespace_error"] = "disabled"
    report.update(network_namespace=ns, mount_namespace=ns, pid_namespace=pidns)
    if not root:
        report["user_namespace"] = ns
    if pidns:
        _become_init(libc)
    # Computed before the root changes: host paths, bind-mounted at the same paths inside.
    # The pool passes the view a previous worker computed (same interpreter, same libraries): saves its startup.
    visible = cfg.get("visible") or rootfs.visible_paths(cfg.get("libraries") or rootfs.ALLOWED_LIBRARIES)
    report["visible"] = visible
    report.update(filesystem="host", proc="host", libraries=visible["libraries"], modules=visible["modules"])
    workdir = ""
    if ns:
        try:
            report.update(rootfs.build_and_enter(cfg["base_dir"], visible, int(cfg["disk_mb"]), pidns))
            workdir = rootfs.WORKDIR
        except OSError as exc:  # half-built mounts stay in our private namespace; the hook guards the host view
            report["filesystem_error"] = str(exc)
    if not workdir:
        workdir = os.path.join(cfg["base_dir"], f"slot-{cfg['slot']}-{os.getpid()}")
    os.makedirs(workdir, mode=0o700, exist_ok=True)

    # A dedicated unprivileged uid when root: root ignores RLIMIT_NPROC and may write anywhere.
    target = cfg.get("uid") if root and kernel else None
    if target is not None:
        os.chown(workdir, target, target)
        os.setgroups([])
        os.setresgid(target, target, target)
        os.setresuid(target, target, target)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)  # a uid change clears it
    report["uid"] = os.getuid()
    report["dropped_root"] = root and os.getuid() != 0
    # RLIMIT_NPROC = 0 is set in each grader child; the kernel ignores it only for real root (uid 0 inside a user
    # namespace of ours is still the unprivileged user outside it, whose limit binds)
    report["nproc_enforced"] = not root or os.getuid() != 0

    mem = int(cfg["memory_mb"]) * 1024 * 1024
    limits = {"RLIMIT_AS": mem, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": int(cfg["disk_mb"]) * 1024 * 1024,
              "RLIMIT_NOFILE": 64}
    applied = []
    for name, value in limits.items():
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            applied.append(name)
        except (ValueError, OSError):
            pass
    report["rlimits"] = applied + ["RLIMIT_NPROC", "RLIMIT_CPU"]
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.chdir(workdir)
    # Nothing of the trainer's environment remains (clear() unsets in libc's environ too) except the thread
    # caps the pool set: BLAS libraries read them at load time and would fail to start threads otherwise.
    keep = {k: v for k, v in os.environ.items() if k in THREAD_CAPS}
    os.environ.clear()
    os.environ.update(keep)
    # A home: the grader uid has no passwd entry (and the new root has no /etc/passwd), so without HOME
    # os.path.expanduser("~") stays "~" and libraries that locate per-user data at import time fail there:
    # nltk 3.9's downloader raises "Could not find a default download directory" from `import nltk`.
    # The working directory is the grader's only writable place, emptied after every call.
    os.environ["HOME"] = workdir
    # What the grader may read, and the directories it may list besides those: the import system lists sys.path
    # entries; /proc only where it is our own.
    readable = {"read": [*visible["readonly"], *DEVICES],
                "list": [os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)]
                + (["/proc"] if report["proc"] == "private" else [])}
    return report, workdir, readable


def _as_number(value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, numbers.Real):
        raise TypeError(f"grade() must return a number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"grade() returned {out}, not a finite number")
    return out


class _Zygote:
    """The fork server: holds compiled graders and the pre-imported libraries, runs each call in a child."""

    def __init__(self, rfd: int, wfd: int, cfg: dict, workdir: str, readable: dict[str, list[str]],
                 modules: set[str], hook):  # type: ignore[no-untyped-def]
        self.rfd, self.wfd, self.cfg = rfd, wfd, cfg
        self.workdir, self.readable, self.modules = workdir, readable, modules
        self.timeout = float(cfg["timeout"])
        self.programs: dict[str, object] = {}
        self.libc, _ = _libc()
        self.hook = hook  # installed in each grader child

    def serve(self) -> None:
        while True:
            req = _frames.read_frame(self.rfd, None, MAX_FRAME)
            if not isinstance(req, dict):
                return  # the trainer closed the pipe (or broke the protocol): nothing left to do
            out: dict = {"id": req.get("id")}
            if req.get("op") == "load":
                out.update(self._load(req))
            elif req.get("key") not in self.programs:
                out.update(ok=False, error_type="JailError", error="grader not loaded in this worker")
            else:
                out.update(self._call(self.programs[req["key"]], req))
            clean = self._wipe_workdir()
            _frames.write_all(self.wfd, _frames.frame(out))
            if not clean:
                return  # a working directory we cannot empty would carry state: let the pool start a new worker

    def _load(self, req: dict) -> dict:
        """Compile (no grader code runs here) and pre-import the allowed libraries the source names."""
        try:
            tree = ast.parse(req["source"], "<grader>")
            code = compile(tree, "<grader>", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            return {"ok": False, "error_type": type(exc).__name__, "error": str(exc)[-MAX_LOG:]}
        for name in _imported_names(tree) & self.modules:
            if name not in sys.modules:
                try:
                    __import__(name)  # trusted library code, imported once into the snapshot children fork from
                except Exception:
                    pass  # the grader gets the same ImportError when it imports it
        self.programs[req["key"]] = code
        return {"ok": True}

    def _call(self, code: object, req: dict) -> dict:
        token = secrets.token_hex(16)
        rfd, wfd = os.pipe()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(rfd)
                os.close(self.rfd)
                os.close(self.wfd)
                self._child(code, req, wfd, token)
            finally:
                os._exit(0)
        os.close(wfd)
        try:
            reply = _frames.read_frame(rfd, start + self.timeout, MAX_FRAME)
        finally:
            os.close(rfd)
        try:
            os.kill(pid, signal.SIGKILL)  # done or overrun: nothing of this call outlives it
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
        if reply == "timeout":
            return {"ok": False, "error_type": "Timeout",
                    "error": f"grade() exceeded the {self.timeout:g}s wall-clock limit"}
        if reply == "eof":
            return {"ok": False, "error_type": "WorkerDied", "error": _death(status)}
        if not isinstance(reply, dict) or reply.pop("token", None) != token:
            return {"ok": False, "error_type": "ProtocolError",
                    "error": "the grader wrote a malformed or forged result frame"}
        return {k: reply[k] for k in ("ok", "value", "error", "error_type", "logs") if k in reply}

    def _child(self, code: object, req: dict, wfd: int, token: str) -> None:
        """Runs in the forked child: last limits, the audit hook, then the grader's module and grade()."""
        self.libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        self.libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        cpu = int(math.ceil(self.timeout)) + 1
        for name, value in (("RLIMIT_NPROC", (0, 0)), ("RLIMIT_CPU", (cpu, cpu + 1))):
            try:
                resource.setrlimit(getattr(resource, name), value)
            except (ValueError, OSError):
                pass
        self.hook.install(self.workdir, self.readable)
        captured = io.StringIO()
        out: dict = {"token": token}
        try:
            sys.stdout = sys.stderr = captured
            namespace: dict = {"__name__": "grader", "__builtins__": __builtins__}
            exec(code, namespace)  # noqa: S102 - the point of a python grader; confined above
            grade = namespace.get("grade")
            if not callable(grade):
                raise TypeError("source does not define grade(sample, item)")
            out.update(ok=True, value=_as_number(grade(req["sample"], req["item"])))
        except MemoryError:
            out.update(ok=False, error_type="MemoryError", error="grader exceeded its memory limit")
        except BaseException as exc:  # SystemExit, KeyboardInterrupt too: reported as this call's error
            ours = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jail_")
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(ours)]
            text = "".join(traceback.format_list(frames[-2:]) + traceback.format_exception_only(type(exc), exc))
            out.update(ok=False, error_type=type(exc).__name__, error=text[-MAX_LOG:])
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        logs = captured.getvalue()
        if logs:
            out["logs"] = logs[-MAX_LOG:]
        _frames.write_all(wfd, _frames.frame(out))

    def _wipe_workdir(self) -> bool:
        try:
            _wipe(self.workdir)
            return True
        except OSError:
            return False


def _wipe(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            os.chmod(entry.path, 0o700)  # a grader may have made it unreadable
            _wipe(entry.path)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)


def _imported_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return f"grader process was killed by {name} (e.g. CPU/memory limit or crash)"
    return f"grader process exited with code {os.waitstatus_to_exitcode(status)} (os._exit?)"


def main() -> None:
    cfg = json.loads(sys.argv[1])
    # Private protocol fds; 0/1/2 become /dev/null so print() or os.write(1, ...) cannot reach the parent.
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:
        hook = _sibling("hook")  # loaded before the root changes: our own files are not in the grader's root
        report, workdir, readable = _confine(cfg)
        modules = set(report.pop("modules", ()))
        visible = report.pop("visible")
    except Exception as exc:  # refuse to run untrusted code half-confined
        _frames.write_all(wfd, _frames.frame({"id": "hello", "ok": False,
                                             "error": f"grader jail setup failed: {exc!r}"}))
        return
    report["audit_hook"] = True
    report["fresh_state_per_call"] = True
    _frames.write_all(wfd, _frames.frame({"id": "hello", "ok": True, "isolation": report, "visible": visible}))
    _Zygote(rfd, wfd, cfg, workdir, readable, modules, hook).serve()


if __name__ == "__main__":
    main()
