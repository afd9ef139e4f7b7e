"""Supply chain of the container images: every Python distribution an image installs is pinned to the version
the tests ran with, and the Dockerfiles install nothing past those pins."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.unit.test_images import ops

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import gen_image_constraints as gen  # noqa: E402

PIN = re.compile(r"^([a-z0-9][a-z0-9-]*)==([0-9][0-9A-Za-z.!+-]*)$")


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"{path.name}: {line!r} is not an exact pin (name==version)"
            out[match.group(1)] = match.group(2)
    return out


@pytest.fixture(scope="module")
def closures() -> dict[str, dict[str, str | None]]:
    return {image: gen.image_closure(extras, python) for image, (_, extras, python) in gen.IMAGES.items()}


@pytest.mark.parametrize("image", gen.IMAGES)
def test_every_python_dependency_of_the_image_is_pinned(image: str, closures: dict) -> None:
    closure = closures[image]
    pinned = pins(gen.IMAGES_DIR / f"{image}-constraints.txt")
    assert not (missing := sorted(set(closure) - set(pinned))), f"{image}: not pinned: {missing} (scripts/gen_image_constraints.py)"
    assert not (stray := sorted(set(pinned) - set(closure))), f"{image}: pins of nothing it installs: {stray}"
    # the transitive requirements are there, not only the direct ones (e.g. torch's and TRL's)
    expected = {"operator": {"kopf", "aiohttp", "yarl", "pydantic-core", "setuptools"},
                "trainer": {"trl", "transformers", "sympy", "networkx", "safetensors", "bitsandbytes", "setuptools"}}
    assert expected[image] <= set(pinned)


@pytest.mark.parametrize("image", gen.IMAGES)
def test_pins_are_the_versions_the_tests_ran_with(image: str) -> None:
    pinned = pins(gen.IMAGES_DIR / f"{image}-constraints.txt")
    drift = {}
    for name, version in pinned.items():
        if name in gen.GPU_ONLY:
            continue
        installed = metadata.version(name).split("+", 1)[0]
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"{image}: pinned != installed {drift}: run scripts/gen_image_constraints.py"


@pytest.mark.parametrize("image", gen.IMAGES)
def test_the_dockerfile_installs_only_through_its_constraints(image: str) -> None:
    dockerfile, extras, _ = gen.IMAGES[image]
    copies = [c.split() for c in ops(dockerfile, "COPY") if "constraints" in c]
    assert copies == [[f"deploy/images/{image}-constraints.txt", "/tmp/constraints.txt"]]
    installs = [r for r in ops(dockerfile, "RUN") if "pip install" in r]
    assert installs
    for run in installs:
        command = run[run.index("pip install"):].split("&&")[0]
        assert "-c /tmp/constraints.txt" in command, f"{dockerfile.name}: unconstrained install: {run}"
        for target in re.findall(r'"([^"]+)"', command):
            if target.startswith("."):  # our package: its extras (the build arguments' defaults), pinned backend
                defaults = dict(a.split("=", 1) for a in ops(dockerfile, "ARG") if "=" in a)
                target = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)].strip('"'), target)
                assert target == f".[{','.join(extras)}]", target
                assert "PIP_CONSTRAINT=/tmp/constraints.txt" in run, f"{dockerfile.name}: unpinned build backend"
            else:
                assert re.match(r"^[\w-]+==[\w.${}]+$", target), f"{dockerfile.name}: {target} is not pinned exactly"


def test_ci_installs_the_versions_the_images_pin() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text()
    line = next(x for x in setup.splitlines() if "-e \".[" in x)
    assert "-c deploy/images/constraints.txt" in line and "PIP_CONSTRAINT=deploy/images/constraints.txt" in line
    everything = pins(gen.ALL)
    for image in gen.IMAGES:
        image_pins = pins(gen.IMAGES_DIR / f"{image}-constraints.txt")
        assert {n: v for n, v in everything.items() if n in image_pins} == image_pins


def test_the_build_backend_is_pinned() -> None:
    import tomllib

    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    for image in gen.IMAGES:
        image_pins = pins(gen.IMAGES_DIR / f"{image}-constraints.txt")
        assert {gen.norm(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0]) for r in requires} <= set(image_pins)
