"""alignctl local up/down/status, the parts that need no running plane: mode choice, where the real control plane's
script is found (also from an installed package), clear refusals, and the OpenAPI v3 answers kubectl needs from
the emulator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from align_localcluster import localplane, openapi, tables
from align_localcluster.cluster import make_emulator

REPO = Path(__file__).resolve().parents[2]


def test_the_script_ships_next_to_the_module_as_the_one_in_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(localplane.SCRIPT_ENV, raising=False)
    found = localplane.realk8s_script()
    assert found is not None and found.parent == Path(localplane.__file__).parent
    # One source of truth: in the source tree the shipped file is scripts/realk8s.sh itself (a symlink that a
    # wheel build turns into a copy through package-data "*.sh").
    assert found.resolve() == (REPO / "scripts" / "realk8s.sh").resolve()
    # The script reads its pinned sid package list from its own directory: it ships alongside.
    assert found.with_name("realk8s-sid.lock").resolve() == (REPO / "scripts" / "realk8s-sid.lock").resolve()
    monkeypatch.setenv(localplane.SCRIPT_ENV, "/opt/elsewhere/realk8s.sh")
    assert localplane.realk8s_script() == Path("/opt/elsewhere/realk8s.sh")


def test_pyproject_ships_shell_scripts_as_package_data() -> None:
    import tomllib
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "*.sh" in data["tool"]["setuptools"]["package-data"]["*"]


def test_auto_mode_is_the_emulator_unless_real_can_run_pods(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REALK8S_HOME", str(tmp_path))
    assert localplane.choose_mode("auto") == "emulator"        # nothing built
    (tmp_path / "bin").mkdir()
    for name in localplane.REALK8S_BINARIES:
        (tmp_path / "bin" / name).write_text("")
    monkeypatch.setattr(localplane, "node_agent_available", lambda: False)
    assert localplane.choose_mode("auto") == "emulator"        # built, but nothing would run the pods
    monkeypatch.setattr(localplane, "node_agent_available", lambda: True)
    assert localplane.choose_mode("auto") == "real"
    assert localplane.choose_mode("emulator") == "emulator"
    with pytest.raises(localplane.PlaneError, match="mode must be one of"):
        localplane.choose_mode("minikube")


def test_real_mode_refuses_clearly_when_not_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REALK8S_HOME", str(tmp_path / "empty"))
    with pytest.raises(localplane.PlaneError, match="scripts/realk8s.sh build"):
        localplane.up(tmp_path / "home", mode="real")
    assert localplane.read_state(tmp_path / "home") is None


def test_status_and_down_without_a_plane(tmp_path: Path) -> None:
    assert localplane.status(tmp_path) == {"running": False, "home": str(tmp_path.resolve())}
    assert localplane.down(tmp_path) is None


def test_a_dead_pid_is_not_running(tmp_path: Path) -> None:
    state = localplane.PlaneState(mode="emulator", server="http://127.0.0.1:1", kubeconfig="k", workdir="w",
                                  cwd="c", processes={"plane": os.getpid(), "operator": 2**22 + 17})
    assert localplane.running(state) == {"plane": True, "operator": False}


def test_openapi_v3_says_every_kind_takes_server_side_field_validation() -> None:
    emulator = make_emulator()
    index = openapi.answer("/openapi/v3", emulator.resources)
    assert index is not None
    assert {"api/v1", "apis/batch/v1", "apis/align.dev/v1alpha1"} <= set(index["paths"])
    doc = openapi.answer(index["paths"]["apis/align.dev/v1alpha1"]["serverRelativeURL"], emulator.resources)
    assert doc is not None
    # What kubectl's query-param verifier looks for: a PATCH for the GVK with fieldValidation in the query.
    patch = doc["paths"]["/apis/align.dev/v1alpha1/namespaces/{namespace}/alignmentjobs/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "align.dev", "version": "v1alpha1",
                                                         "kind": "AlignmentJob"}
    assert {"name": "fieldValidation", "in": "query"}.items() <= next(
        p for p in patch["parameters"] if p["name"] == "fieldValidation").items()
    core = openapi.answer("/openapi/v3/api/v1", emulator.resources)
    assert core is not None and "/api/v1/namespaces" in core["paths"]  # cluster-scoped: no namespace segment
    assert openapi.answer("/openapi/v3/apis/nope/v1", emulator.resources) is None


def test_an_unreaped_child_counts_as_stopped() -> None:
    # `down` run in the process that started the plane (a test, a script) sees it as a zombie until reaped.
    import signal
    import subprocess
    import time
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert localplane.alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while localplane.alive(child.pid):
            assert time.monotonic() < deadline, "a killed, unreaped child still counts as running"
            time.sleep(0.05)
        started = time.monotonic()
        localplane._stop_pid(child.pid, grace=5)
        assert time.monotonic() - started < 2
    finally:
        child.kill()
        child.wait()


def test_table_of_the_crd_printer_columns() -> None:
    from datetime import datetime, timezone

    from align_api.crd import build_crd
    columns = tables.printer_columns(build_crd())[("align.dev", "v1alpha1", "alignmentjobs")]
    job = {"kind": "AlignmentJob", "metadata": {"name": "a", "creationTimestamp": "2026-11-30T10:00:00Z"},
           "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}}, "status": {"progress": {"percent": 50}}}
    now = datetime(2026, 11, 30, 10, 7, 0, tzinfo=timezone.utc)
    table = tables.as_table({"kind": "AlignmentJobList", "metadata": {"resourceVersion": "9"}, "items": [job]},
                            columns, now)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Phase", "Algorithm", "Model", "Progress", "GPU-h", "Pod-h",
                                                               "Age"]
    assert table["rows"][0]["cells"] == ["a", None, "dpo", "builtin://tiny", "50", None, None, "7m"]
    assert table["rows"][0]["object"]["metadata"]["name"] == "a"
    assert tables.as_table(job, columns, now)["rows"][0]["cells"][0] == "a"  # one object, not a list
    assert [tables._age(f"2026-11-30T{t}Z", now) for t in ("10:06:30", "10:05:30", "08:00:00")] == ["30s", "90s", "127m"]


def test_the_quickstart_runs_the_real_model_unless_told_tiny() -> None:
    from align_localcluster import quickstart
    assert quickstart.choose_manifest(None, tiny=False) == quickstart.REAL_MANIFEST
    assert quickstart.choose_manifest(None, tiny=True) == quickstart.DEFAULT_MANIFEST
    mine = Path("my.yaml")
    assert quickstart.choose_manifest(mine, tiny=False) == mine
    assert "smollm2" in quickstart.REAL_MANIFEST.read_text() and quickstart.DEFAULT_MANIFEST.is_file()
    with pytest.raises(SystemExit):
        quickstart.main(["--real", "--tiny"])
