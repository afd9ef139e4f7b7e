"""Pod spec -> `podman run` translation (containers.py): what the container runtime is told must be what
the rendered pod says, or the container tests would exercise something other than what a cluster runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align_api.validate import load_file
from align_operator.renderers import render_job
from align_localcluster.containers import (Mount, cpus, memory_bytes, podman_run_argv, resource_flags,
                                               security_flags)
from align_operator.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _pod() -> tuple[dict, dict]:
    job = load_file(REPO / "examples" / "dpo.yaml")[0]
    pod = render_job(job, "default", Settings(run_as_user=1234))["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_the_rendered_security_context_reaches_podman() -> None:
    pod, container = _pod()
    flags = security_flags(pod["securityContext"], container["securityContext"])
    assert _flag_values(flags, "--user") == ["1234:1234"]
    assert _flag_values(flags, "--group-add") == ["1234"]  # fsGroup: the volumes' group
    assert "--read-only" in flags
    assert _flag_values(flags, "--cap-drop") == ["ALL"]
    assert _flag_values(flags, "--security-opt") == ["no-new-privileges"]
    assert "--privileged" not in flags


def test_container_fields_win_over_the_pods() -> None:
    flags = security_flags({"runAsUser": 1, "runAsGroup": 2}, {"runAsUser": 3})
    assert _flag_values(flags, "--user") == ["3:2"]
    with pytest.raises(ValueError, match="runAsNonRoot"):
        security_flags({"runAsNonRoot": True}, {})


@pytest.mark.parametrize("quantity, expected", [("500m", "0.5"), ("2", "2.0"), ("1500m", "1.5")])
def test_cpu_quantities(quantity: str, expected: str) -> None:
    assert cpus(quantity) == expected


@pytest.mark.parametrize("quantity, expected", [("1Gi", 2**30), ("512Mi", 512 * 2**20), ("2G", 2 * 10**9),
                                                ("1000", 1000)])
def test_memory_quantities(quantity: str, expected: int) -> None:
    assert memory_bytes(quantity) == expected


def test_a_bad_memory_quantity_is_an_error() -> None:
    with pytest.raises(ValueError, match="12Qi"):
        memory_bytes("12Qi")


def test_limits_become_podman_limits() -> None:
    flags = resource_flags({"limits": {"cpu": "250m", "memory": "1Gi"}, "requests": {"cpu": "4"}})
    assert _flag_values(flags, "--cpus") == ["0.25"] and _flag_values(flags, "--memory") == [str(2**30)]


def test_command_replaces_the_entrypoint_and_args_follow_the_image(tmp_path: Path) -> None:
    pod, container = _pod()
    mounts = [Mount("/etc/align", tmp_path / "config", True), Mount("/workspace", tmp_path / "work")]
    argv = podman_run_argv(name="p", image="img:1", container=container, pod_spec=pod, env={"A": "1"},
                           mounts=mounts, termination_log=tmp_path / "t")
    image_at = argv.index("img:1")
    assert json.loads(_flag_values(argv, "--entrypoint")[0]) == container["command"] == ["python"]
    assert argv[image_at + 1:] == container["args"]
    assert argv[image_at + 1:][:4] == ["-m", "align_trainer", "--config", "/etc/align/job.yaml"]
    volumes = _flag_values(argv, "--volume")
    assert f"{tmp_path / 'config'}:/etc/align:ro" in volumes and f"{tmp_path / 'work'}:/workspace:rw" in volumes
    assert f"{tmp_path / 't'}:/dev/termination-log:rw" in volumes
    assert _flag_values(argv, "--env") == ["A=1"]
    assert _flag_values(argv, "--stop-timeout") == [str(pod.get("terminationGracePeriodSeconds", 30))]
    assert all(flag not in argv[image_at:] for flag in ("--user", "--volume", "--env"))  # flags before the image


def test_podman_gets_the_projects_containers_conf() -> None:
    # the path is relative to the package's place in the tree: a move of the package must move it too
    from align_localcluster.containers import CONTAINERS_CONF, podman_env
    assert CONTAINERS_CONF.is_file(), CONTAINERS_CONF
    assert Path(podman_env()["CONTAINERS_CONF"]) == CONTAINERS_CONF
