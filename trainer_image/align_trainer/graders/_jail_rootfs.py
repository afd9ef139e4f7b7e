"""The filesystem a python grader sees: a new, read-only root holding only what a grader may use.

Loaded by path from `_jail_worker.py` (standard library only; nothing of align_trainer is imported into the
process that runs untrusted code). Inside the worker's private mount namespace, a tmpfs becomes the new root;
bind-mounted into it, read-only, at their usual paths:

* the interpreter's standard library (its own `site-packages`, if any, masked by an empty directory);
* the allowed grader libraries and what they require (`ALLOWED_LIBRARIES`, the installed ones), each as its
  package directories inside an otherwise empty `site-packages`;
* the shared libraries the interpreter has loaded, and the system library directory libc comes from (extension
  modules dlopen libssl, libz, libffi, ... lazily), and `/etc/ld.so.cache`;
* `/dev/null`, `/dev/zero`, `/dev/random`, `/dev/urandom`;
* a fresh `proc` of the worker's own PID namespace (only the grader's processes), when the kernel allows it;
* a private, size-limited tmpfs on `/tmp` (the only writable place; the working directory is `/tmp/grader`).

Then `pivot_root` (or `chroot` where the root cannot be pivoted) and the old root is detached: nothing else of
the host or pod (trainer config, data, model, tokens, our own code, other processes) exists for the grader.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import sys

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
ST_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC}
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41, "ppc64le": 203, "s390x": 217}
DEVICES = ("null", "zero", "random", "urandom")
WORKDIR = "/tmp/grader"

#: Third-party libraries a grader may import (those installed; their requirements come along). OpenAI's python
#: grader offers numpy/scipy/sympy/pandas/rapidfuzz/scikit-learn/rouge-score/deepdiff/jsonschema/pydantic/pyyaml/
#: nltk/sqlparse; sacrebleu and regex are our text metrics.
ALLOWED_LIBRARIES = ("numpy", "scipy", "sympy", "pandas", "rapidfuzz", "scikit-learn", "rouge-score", "deepdiff",
                     "jsonschema", "pydantic", "pyyaml", "nltk", "sqlparse", "sacrebleu", "regex")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def library_paths(names: tuple[str, ...] | list[str]) -> tuple[list[str], list[str], list[str]]:
    """(paths, distributions, import names): the installed files of `names` and of what they require (no extras)."""
    from importlib import metadata  # only when the pool has not passed a view computed before
    todo, seen, paths, modules = [_norm(n) for n in names], set(), set(), set()
    found: list[str] = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
        base = str(dist.locate_file(""))
        record = dist.read_text("RECORD")  # read directly: dist.files builds a Path per file (seconds at startup)
        names = [line.split(",", 1)[0] for line in record.splitlines()] if record else \
            [str(entry) for entry in dist.files or ()]
        tops = {(name.split("/", 1)[0], "/" not in name) for name in names if name}
        for top, is_file in tops:
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue  # scripts in bin/, byte code, path hooks (editable installs point outside)
            paths.add(os.path.realpath(os.path.join(base, top)))
            module = top.split(".")[0] if is_file else top
            if module.isidentifier() and not top.endswith((".dist-info", ".data", ".libs")):
                modules.add(module)
        for req in dist.requires or ():
            if "extra ==" not in req.replace("extra==", "extra =="):
                todo.append(_norm(re.match(r"[A-Za-z0-9._-]+", req).group(0)))  # type: ignore[union-attr]
    return sorted(p for p in paths if os.path.exists(p)), sorted(found), sorted(modules)


def _stdlib_dirs() -> list[str]:
    """The standard library and lib-dynload (as on sys.path)."""
    prefixes = tuple(os.path.realpath(p) + "/" for p in {sys.base_prefix, sys.base_exec_prefix})
    dirs = {os.path.realpath(os.path.dirname(os.__file__))}
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real.startswith(prefixes) and os.path.isdir(real) and "-packages" not in real:
            dirs.add(real)  # e.g. a lib-dynload outside the stdlib directory
    return sorted(dirs)


def _shared_libraries() -> list[str]:
    """The shared objects mapped into this process, and the directory libc came from: extension modules dlopen
    system libraries (libssl, libz, libffi, ...) lazily, found there through ld.so.cache."""
    found = set()
    with open("/proc/self/maps") as fh:
        for line in fh:
            path = line.split(maxsplit=5)[-1].strip()
            if path.startswith("/") and ".so" in os.path.basename(path) and os.path.exists(path):
                real = os.path.realpath(path)
                found.add(os.path.dirname(real) if os.path.basename(real).startswith("libc.so") else real)
    return sorted(found)


def visible_paths(libraries: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """What the grader's root holds, by host path: read-only binds, masked directories, the libraries found."""
    stdlib = _stdlib_dirs()
    libs, dists, modules = library_paths(libraries)
    inside = tuple(p + "/" for p in stdlib + libs)
    shared = [p for p in _shared_libraries() if not p.startswith(inside)]
    extra = [p for p in ("/etc/ld.so.cache",) if os.path.exists(p)]
    masked = [os.path.join(d, sub) for d in stdlib for sub in ("site-packages", "dist-packages")
              if os.path.isdir(os.path.join(d, sub))]
    return {"readonly": _outermost(stdlib + libs + shared + extra), "masked": masked, "libraries": dists,
            "modules": modules}


def _outermost(paths: list[str]) -> list[str]:
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(kept + "/") for kept in out):
            out.append(path)
    return out


class _Mounter:
    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = (lambda s: s.encode() if s is not None else None)
        if self.libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")

    def bind_readonly(self, source: str, target: str) -> None:
        self.mount(source, target, None, MS_BIND | MS_REC)
        # Remounting must keep the flags the source mount has locked (nosuid/nodev/noexec in a user namespace).
        locked = sum(flag for st, flag in ST_FLAGS.items() if os.statvfs(target).f_flag & st)
        self.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked)


def _make_target(root: str, path: str, is_dir: bool) -> str:
    target = root + path
    if is_dir:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    return target


def build_and_enter(root: str, visible: dict[str, list[str]], disk_mb: int, private_proc: bool) -> dict:
    """Build the grader's root at `root` (an existing, empty directory) and make it `/`. Needs a private mount
    namespace and CAP_SYS_ADMIN in it (root, or a user namespace). Returns what took effect."""
    m = _Mounter()
    report: dict = {}
    m.mount("none", "/", None, MS_REC | MS_PRIVATE)
    m.mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    # The private writable /tmp first, the read-only binds after: an interpreter or virtualenv that lives under
    # /tmp (a CI clone in /tmp/...) is then bound on top of it instead of being hidden by it.
    os.makedirs(root + "/tmp", mode=0o755)
    m.mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(disk_mb)}m,mode=1777")
    for path in visible["readonly"]:
        m.bind_readonly(path, _make_target(root, path, os.path.isdir(path)))
    for path in visible["masked"]:
        m.mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0755")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            m.bind_readonly(f"/dev/{name}", _make_target(root, f"/dev/{name}", False))
    for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin")):
        if os.path.islink(link) and not os.path.lexists(root + link):
            os.symlink(os.readlink(link) or target, root + link)  # merged-/usr layouts name libraries via /lib
    os.makedirs(root + "/proc", mode=0o555)
    report["proc"] = "none"
    if private_proc:
        try:  # a proc of our own PID namespace: lists the grader's processes only
            m.mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            report["proc"] = "private"
        except OSError as exc:  # e.g. a user namespace in a container whose /proc is partly masked
            report["proc_error"] = exc.strerror
    report["filesystem"] = _enter(m, root)
    m.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    report["readonly_paths"] = len(visible["readonly"])
    report["libraries"] = visible["libraries"]
    return report


def _enter(m: _Mounter, root: str) -> str:
    """pivot_root to `root` and detach the old root; chroot where the current root cannot be pivoted (initramfs)."""
    number = SYS_PIVOT_ROOT.get(platform.machine())
    os.chdir(root)
    if number is not None and m.libc.syscall(number, b".", b".") == 0:
        # pivot_root(".", "."): the old root is stacked under the new one; detaching it leaves only the new root
        if m.libc.umount2(b".", MNT_DETACH) != 0:
            raise OSError(ctypes.get_errno(), "cannot detach the old root")
        os.chdir("/")
        return "pivot_root"
    os.chroot(".")  # the dropped uid has no CAP_SYS_CHROOT, so it cannot chroot back out
    os.chdir("/")
    return "chroot"
