"""Static checks of the two Dockerfiles (no Docker daemon here): pinned bases, non-root users, entrypoints that
exist in the package, COPY sources that exist, and agreement with the chart and the operator's settings."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from align_api.constants import CONFIG_FILE_NAME, CONFIG_MOUNT_PATH, DEFAULT_METRICS_PORT

REPO = Path(__file__).resolve().parents[2]
OPERATOR = REPO / "operator" / "Dockerfile"
TRAINER = REPO / "trainer_image" / "Dockerfile"
CONSTRAINTS = REPO / "deploy" / "images" / "constraints.txt"
PINNED = re.compile(r"^[\w./-]+(:[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str


def parse(path: Path) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped; FROM lines with their build
    arguments replaced by the defaults (`ARG BASE_IMAGE=...` before `FROM ${BASE_IMAGE}`), as a plain build sees them."""
    out: list[Instruction] = []
    defaults: dict[str, str] = {}
    buffer = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, also between the lines of a continued instruction
        continued = line.rstrip().endswith("\\")
        buffer += line.rstrip().rstrip("\\").strip() + " " if continued else line.strip()
        if continued:
            continue
        if buffer.strip():
            op, _, args = buffer.strip().partition(" ")
            args = args.strip()
            if op.upper() == "ARG" and "=" in args:
                name, _, value = args.partition("=")
                defaults.setdefault(name, value.strip('"'))
            if op.upper() == "FROM":
                args = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m.group(1) or m.group(2), m.group(0)), args)
            out.append(Instruction(op.upper(), args))
        buffer = ""
    return out


def ops(path: Path, op: str) -> list[str]:
    return [i.args for i in parse(path) if i.op == op]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return value


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_base_images_are_pinned(path: Path) -> None:
    stages: set[str] = set()
    for args in ops(path, "FROM"):
        parts = args.split()
        image = next(p for p in parts if not p.startswith("--"))
        if image in stages:
            continue
        assert ":latest" not in image and (":" in image or "@sha256:" in image), image
        assert PINNED.match(image), f"{image}: pin an exact version tag (x.y.z) or a sha256 digest"
        if " AS " in args.upper():
            stages.add(parts[-1])


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_final_user_is_numeric_non_root(path: Path) -> None:
    users = ops(path, "USER")
    assert users, "no USER instruction: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: use a numeric non-root UID (runAsNonRoot needs it)"
    # The last USER comes after the last RUN: nothing in the final image runs as root at build time after it.
    final = parse(path)
    assert max(i for i, ins in enumerate(final) if ins.op == "USER") > max(
        i for i, ins in enumerate(final) if ins.op == "RUN")


def _dockerignored(rel: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    return any(fnmatch.fnmatch(rel, p) or rel.startswith(p.rstrip("/") + "/") for p in patterns)


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_copy_sources_exist_in_the_build_context(path: Path) -> None:
    for args in ops(path, "COPY"):
        if "--from=" in args:
            continue
        *sources, _dest = args.split()
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: missing (the build context is the repository root)"
            assert not _dockerignored(src.rstrip("/")), f"COPY {src}: excluded by .dockerignore"


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_dependencies_are_installed_with_the_pinned_constraints(path: Path) -> None:
    installs = [r for r in ops(path, "RUN") if "pip install" in r and "torch==" not in r]
    assert installs and all("-c /tmp/constraints.txt" in r for r in installs)


@pytest.mark.parametrize("path", [OPERATOR, TRAINER], ids=["operator", "trainer"])
def test_base_and_pip_flags_are_build_arguments(path: Path) -> None:
    # scripts/build_images.sh builds offline on a local base: both must stay overridable, and every pip install
    # must take the offline flags (one that does not would reach for an index the build has no network for).
    froms = [line for line in path.read_text().splitlines() if line.startswith("FROM ")]
    assert froms and all("${BASE_IMAGE}" in line for line in froms), froms
    assert any(a.startswith("BASE_IMAGE=") for a in ops(path, "ARG")) and "PIP_INSTALL_FLAGS=\"\"" in ops(path, "ARG")
    installs = [r for r in ops(path, "RUN") if "pip install" in r]
    assert installs and all("${PIP_INSTALL_FLAGS}" in r for r in installs), installs


def test_trainer_entrypoint_runs_the_trainer_module() -> None:
    entry = exec_form(ops(TRAINER, "ENTRYPOINT")[-1])
    assert entry == ["python", "-m", "align_trainer"]
    assert (REPO / "trainer_image" / "align_trainer" / "__main__.py").exists()
    assert exec_form(ops(TRAINER, "CMD")[-1]) == ["--config", f"{CONFIG_MOUNT_PATH}/{CONFIG_FILE_NAME}"]
    assert not [h for h in ops(TRAINER, "HEALTHCHECK") if h.upper() != "NONE"]
    assert str(DEFAULT_METRICS_PORT) in ops(TRAINER, "EXPOSE")[-1].split()


def test_trainer_has_cuda_runtime_and_the_tested_torch() -> None:
    base = ops(TRAINER, "FROM")[-1].split()[0]
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    torch_arg = next(a for a in ops(TRAINER, "ARG") if a.startswith("TORCH_VERSION="))
    from importlib.metadata import version

    assert torch_arg.split("=", 1)[1] == version("torch").split("+")[0], "the image must run the torch tests ran"
    assert any('".[${TRAINER_EXTRAS}]"' in r for r in ops(TRAINER, "RUN"))
    assert {"trainer", "gpu"} <= set(trainer_extras()), "the default build installs the trainer and its GPU extra"


def trainer_extras() -> list[str]:
    """The pyproject extras the trainer Dockerfile installs by default (ARG TRAINER_EXTRAS)."""
    default = next(a for a in ops(TRAINER, "ARG") if a.startswith("TRAINER_EXTRAS="))
    return default.split("=", 1)[1].strip('"').split(",")


def provided(extras: list[str]) -> set[str]:
    """Import names of the distributions these pyproject extras require ("liger-kernel" -> "liger_kernel")."""
    import tomllib
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("-", "_")
            for extra in extras for req in optional[extra]}


def test_the_cuda_build_installs_liger_and_the_cpu_build_does_not() -> None:
    """hyperparameters.ligerKernel's package is in the default (CUDA) trainer image; scripts/build_images.sh's CPU
    build leaves it out (Triton kernels need CUDA), and builds from a wheelhouse of exactly the extras it installs.
    vLLM is in no default build: it pins its own torch and transformers (pyproject's accel extra)."""
    from align_trainer.accel import PACKAGES
    default = trainer_extras()
    assert PACKAGES["ligerKernel"] in provided(default), f"the default build ({default}) lacks liger-kernel"
    assert PACKAGES["vllm"] not in provided(default) and PACKAGES["vllm"] in provided(["accel"])
    script = (REPO / "scripts" / "build_images.sh").read_text()
    cpu = re.search(r"^\s*TRAINER_EXTRAS=(\S+)$", script, re.M)
    assert cpu is not None, "scripts/build_images.sh must choose the trainer's extras"
    cpu_extras = cpu.group(1).split(",")
    assert PACKAGES["ligerKernel"] not in provided(cpu_extras) and PACKAGES["vllm"] not in provided(cpu_extras)
    assert {"trainer", "gpu"} <= set(cpu_extras)
    assert 'wheelhouse trainer "$TRAINER_EXTRAS"' in script  # the wheels it prepares are the ones it installs
    assert re.search(r'build trainer trainer_image/Dockerfile "\$TRAINER" TRAINER_EXTRAS="\$TRAINER_EXTRAS"', script)
    assert '--build-arg "$arg"' in script
    # the default build's extra distributions are pinned like every other
    pins = (REPO / "deploy" / "images" / "trainer-constraints.txt").read_text()
    assert re.search(r"^liger-kernel==\d", pins, re.M), "liger-kernel is not pinned (scripts/gen_image_constraints.py)"


def test_trainer_user_is_the_operators_default_run_as_user() -> None:
    uid = int(ops(TRAINER, "USER")[-1].split(":")[0])
    chart_values = yaml.safe_load((REPO / "charts" / "align-operator" / "values.yaml").read_text())
    assert chart_values["trainer"]["runAsUser"] == uid
    from align_operator import settings
    assert settings.Settings().run_as_user == uid


def test_operator_entrypoint_matches_the_chart() -> None:
    entry = exec_form(ops(OPERATOR, "ENTRYPOINT")[-1])
    cmd = exec_form(ops(OPERATOR, "CMD")[-1])
    assert entry == ["kopf", "run"]
    module = next(a.split("=", 1)[1] for a in cmd if a.startswith("--module="))
    assert (REPO / "operator" / Path(*module.split(".")).with_suffix(".py")).exists(), module
    deployment = (REPO / "charts" / "align-operator" / "templates" / "deployment.yaml").read_text()
    assert 'command: ["kopf", "run"]' in deployment and f"--module={module}" in deployment
    assert "--standalone" in cmd and "--liveness=http://0.0.0.0:8080/healthz" in cmd
    exposed = ops(OPERATOR, "EXPOSE")[-1].split()
    values = yaml.safe_load((REPO / "charts" / "align-operator" / "values.yaml").read_text())
    assert {str(values["operator"]["healthPort"]), str(values["operator"]["metricsPort"])} <= set(exposed)
    assert ops(OPERATOR, "FROM")[-1].startswith("python:") and "slim" in ops(OPERATOR, "FROM")[-1]


def test_apt_layers_are_lean() -> None:
    for path in (OPERATOR, TRAINER):
        for run in ops(path, "RUN"):
            if "apt-get install" in run:
                assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists" in run


def test_constraints_pin_every_runtime_dependency() -> None:
    import tomllib

    pins = {line.split("==")[0].lower() for line in CONSTRAINTS.read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("operator", "trainer", "gpu", "liger"):
        wanted += project["optional-dependencies"][extra]
    names = {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-") for req in wanted}
    missing = names - pins - {"torch"}
    assert not missing, f"not pinned in {CONSTRAINTS.relative_to(REPO)}: {sorted(missing)} (scripts/gen_image_constraints.py)"
