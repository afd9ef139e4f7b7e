"""The audit hook (PEP 578) of a python-grader process, installed by `_jail_worker.py` in each grader child.

Defence in depth behind the kernel layers, and the only barrier where the kernel refuses namespaces: denies
sockets, process creation, signals, ctypes, gc introspection, rlimit changes, writes outside the working
directory, and reads or directory listings outside what the grader's root exposes (`readable`: the paths of
`_jail_rootfs.visible_paths`, the devices, the sys.path directories and, where it is private, /proc).
Standard library only; loaded by path.
"""

from __future__ import annotations

import os
import sys


def install(workdir: str, readable: dict[str, list[str]]) -> None:
    """Deny what the grader has no business doing. Closure over immutable values only, no global state."""
    deny_prefix = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
                   "os.system", "os.kill", "os.killpg", "pty.", "ctypes.", "gc.get_", "resource.setrlimit",
                   "resource.prlimit", "sys.remote_exec", "_posixsubprocess.", "os.startfile", "winreg.",
                   "webbrowser.", "ftplib.", "smtplib.", "telnetlib.", "urllib.", "http.", "imaplib.",
                   "nntplib.", "poplib.", "signal.pthread_kill", "sqlite3.enable_load_extension",
                   "sqlite3.load_extension")
    path_events = frozenset({"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                             "os.chmod", "os.chown", "os.truncate", "os.utime", "os.setxattr", "os.removexattr",
                             "os.chflags", "os.lchflags", "os.lchmod", "os.mkfifo", "os.mknod", "shutil.rmtree",
                             "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move"})
    list_events = frozenset({"os.listdir", "os.scandir", "glob.glob", "glob.glob/2", "os.listxattr", "os.getxattr"})
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    root = os.path.realpath(workdir) + os.sep
    own = (f"/proc/{os.getpid()}/", "/proc/cpuinfo", "/proc/meminfo")  # realpath turns /proc/self into this
    exact = frozenset(readable["read"])
    under = tuple(p.rstrip("/") + "/" for p in readable["read"]) + (root,) + own
    listable = frozenset(readable["list"])
    realpath = os.path.realpath
    fspath = os.fspath

    def resolve(path: object) -> str | None:
        try:
            text = fspath(path)  # type: ignore[arg-type]
            if isinstance(text, bytes):
                text = text.decode("utf-8", "surrogateescape")
            return realpath(text)
        except Exception:
            return None

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True  # an fd already opened (and checked) by us
        real = resolve(path)
        return real is not None and ((real + os.sep).startswith(root) or real == "/dev/null")

    def readable_path(path: object, listing: bool = False) -> bool:
        if isinstance(path, int) or path is None:
            return True  # an fd already opened (and checked) by us; None: the working directory
        real = resolve(path)
        if real is None:
            return False
        return real in exact or (real + os.sep).startswith(under) or (listing and real in listable)

    def hook(event: str, args: tuple) -> None:
        if event.startswith(deny_prefix):
            raise PermissionError(f"grader jail: {event} is not allowed in a python grader")
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                      (isinstance(flags, int) and flags & write_flags)
            if writing and not inside(path):
                raise PermissionError(f"grader jail: writing {path!r} is not allowed (only the working directory)")
            if not writing and not readable_path(path):
                raise PermissionError(f"grader jail: reading {path!r} is not allowed")
        elif event in list_events:
            if args and not readable_path(args[0], listing=True):
                raise PermissionError(f"grader jail: listing {args[0]!r} is not allowed")
        elif event in path_events:
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg):
                    raise PermissionError(f"grader jail: {event} outside the working directory is not allowed")
        elif event == "sqlite3.connect":  # SQLite opens files in C, past the "open" event
            if args and args[0] not in (":memory:", "", b":memory:", b"") and not inside(args[0]):
                raise PermissionError("grader jail: sqlite3 databases outside the working directory are not allowed")
        elif event == "object.__setattr__" and len(args) > 1 and args[1] in ("__code__", "cell_contents"):
            raise PermissionError("grader jail: replacing code objects is not allowed")

    sys.addaudithook(hook)
