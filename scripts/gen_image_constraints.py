#!/usr/bin/env python3
"""Write the pinned constraints files: one per container image, and one for the test environment.

* `deploy/images/<image>-constraints.txt`: every Python distribution that image installs (its extras of
  pyproject.toml, everything they require, transitively, with markers evaluated for the image's Python on
  Linux x86_64, and the build backend), pinned to the version the test suite ran with. The Dockerfiles install
  with `pip install -c` (and PIP_CONSTRAINT for the isolated build of our own package), so a build months later
  installs what was tested. The file doubles as the image's dependency list (an SBOM of its Python layer).
* `deploy/images/constraints.txt`: the whole test environment (dev tools too); scripts/setup.sh installs with
  it, so CI tests exactly the versions the images pin.

torch is left out: each Dockerfile pins it with an ARG (the CPU wheel tested here is not the CUDA wheel the
trainer image needs; the CUDA wheel pins its nvidia-* and triton requirements exactly itself, so triton is left
out too). bitsandbytes and liger-kernel (GPU only, absent from CPU machines) are pinned here by hand, together
with their requirements.

    python scripts/gen_image_constraints.py          # write
    python scripts/gen_image_constraints.py --check  # exit 1 if a file is out of date
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

import generated  # scripts/generated.py (this directory is on sys.path when run as a script)

REPO = Path(__file__).resolve().parent.parent
IMAGES_DIR = REPO / "deploy" / "images"
ALL = IMAGES_DIR / "constraints.txt"
#: image -> (Dockerfile, pyproject extras it installs, its Python version)
IMAGES = {
    "operator": (REPO / "operator" / "Dockerfile", ("operator",), "3.11"),
    # the default (CUDA) build: TRAINER_EXTRAS in the Dockerfile (scripts/build_images.sh's CPU build: trainer,gpu)
    "trainer": (REPO / "trainer_image" / "Dockerfile", ("trainer", "gpu", "liger"), "3.12"),
}
#: Pinned by the Dockerfiles themselves (ARG TORCH_VERSION) or not part of any image.
EXCLUDE = {"torch", "triton", "helm-sdkpy", "pip", "align-operator"}
#: GPU-only distributions that cannot be installed on the CPU machines the tests run on: version, requirements.
GPU_ONLY = {"bitsandbytes": ("0.50.2", ("torch", "numpy", "packaging")),
            "liger-kernel": ("0.8.5", ("torch", "triton"))}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(name: str) -> str | None:
    if name in GPU_ONLY:
        return GPU_ONLY[name][0]
    try:
        return metadata.version(name).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        return None


def _requires(name: str) -> list[str]:
    if name in GPU_ONLY:
        return list(GPU_ONLY[name][1])
    try:
        return list(metadata.requires(name) or [])
    except metadata.PackageNotFoundError:
        return []


def image_closure(extras: tuple[str, ...], python: str) -> dict[str, str | None]:
    """Every distribution `pip install ".[extras]"` brings into an image on Linux x86_64 with this Python, with
    the version installed here (None: required but not installed here, so it cannot be pinned)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = {**default_environment(), "python_version": python, "python_full_version": f"{python}.0",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    roots = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for extra in extras:
        roots += project["project"]["optional-dependencies"][extra]
    todo = [(req, "") for req in roots]
    found: dict[str, str | None] = {}
    seen: set[tuple[str, str]] = set()
    while todo:
        text, extra = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = norm(req.name)
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            found.setdefault(name, _version(name))
            todo += [(child, wanted) for child in _requires(name)]
    return {name: version for name, version in sorted(found.items()) if name not in EXCLUDE}


def _frozen() -> dict[str, str]:
    lines = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"], check=True,
                           capture_output=True, text=True).stdout.splitlines()
    pins = {}
    for line in lines:
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            if norm(name) not in EXCLUDE:
                pins[norm(name)] = version.split("+", 1)[0]
    return pins


def render(pins: dict[str, str], used_by: str) -> str:
    header = ("# Generated by scripts/gen_image_constraints.py from the environment the tests ran in; do not edit.\n"
              f"# {used_by}\n")
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def expected() -> dict[Path, str]:
    """The content every constraints file should have, from this environment."""
    out: dict[Path, str] = {}
    for image, (dockerfile, extras, python) in IMAGES.items():
        closure = image_closure(extras, python)
        missing = sorted(name for name, version in closure.items() if version is None)
        if missing:
            raise SystemExit(f"{image}: required but not installed here, cannot pin: {', '.join(missing)}")
        out[IMAGES_DIR / f"{image}-constraints.txt"] = render(
            closure, f"Used by {dockerfile.relative_to(REPO)}: pip install -c (every distribution the image installs).")
    everything = {**_frozen(), **{name: version for name, (version, _) in GPU_ONLY.items()}}
    out[ALL] = render(everything, "Used by scripts/setup.sh: the test environment (CI installs these versions).")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file differs from what would be written")
    args = parser.parse_args()
    return generated.sync(expected(), check=args.check, rerun="scripts/gen_image_constraints.py")


if __name__ == "__main__":
    sys.exit(main())
