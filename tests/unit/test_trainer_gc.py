"""`python -m align_trainer` keeps the cyclic garbage collector off while it starts and freezes what startup built
before training (main.settle_startup_heap; issue 15's trainer overhead). In-process callers keep their collector.

The entry point runs for real up to the algorithm (manifest, algorithm lookup, preflight); the expensive steps
(libraries, data, model) are replaced by stand-ins that record the collector's state where they run."""

from __future__ import annotations

import gc
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Iterator

import pytest
import yaml

from align_api.constants import ExitCode
from align_trainer import main, preflight
from align_trainer.errors import ConfigError
from align_trainer.runtime import DataKind

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def collector() -> Iterator[None]:
    """Whatever a run does to the collector is undone for the rest of the session."""
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if was_enabled else gc.disable)()


def _manifest(tmp_path: Path) -> Path:
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "gc"},
           "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"},
                    "data": {"train": {"uri": str(REPO / "examples/data/preference.openai.jsonl"),
                                       "format": "openai-preference"}},
                    "resources": {"gpusPerNode": 0}, "evaluation": {"enabled": False}}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, own_process: bool) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    real_preflight = preflight.run

    def checked_preflight(*args: Any, **kwargs: Any) -> None:
        seen["preflight"] = gc.isenabled()
        real_preflight(*args, **kwargs)

    def context(*_: Any, **__: Any) -> SimpleNamespace:
        seen["context"] = gc.isenabled()
        metrics = SimpleNamespace(write_status=lambda **_: None, close=lambda: None)
        return SimpleNamespace(previous_sigterm_handler=None, keep_local=False, device=SimpleNamespace(device="cpu", dtype="float32"),
                               paths=SimpleNamespace(output_dir=tmp_path / "out"), resume_from=None, metrics=metrics)

    def train(_ctx: Any) -> None:
        seen["training"] = (gc.isenabled(), gc.get_freeze_count())
        seen["walked"] = len(gc.get_objects())  # what a full collection walks now
        raise ConfigError("stop here: the collector's state is all this test needs")

    algorithm = ModuleType("fake_dpo")
    algorithm.DATA, algorithm.run = DataKind.PREFERENCE, train  # type: ignore[attr-defined]
    monkeypatch.setattr(main, "load_algorithm", lambda _name: algorithm)
    monkeypatch.setattr(preflight, "run", checked_preflight)
    monkeypatch.setattr(main, "quiet_libraries", lambda: None)
    monkeypatch.setattr(main, "build_context", context)
    monkeypatch.setattr(main, "evaluation_hook", lambda _ctx: None)
    monkeypatch.setenv("ALIGN_TERMINATION_LOG", str(tmp_path / "termination-log"))
    gc.enable()
    code = main.run(["--config", str(_manifest(tmp_path)), "--output", str(tmp_path / "out"),
                     "--metrics-port", "-1"], own_process=own_process)
    assert code == ExitCode.CONFIG_ERROR  # the stand-in's stop, not a failure of the steps before it
    return seen


def test_own_process_starts_without_the_collector_and_trains_with_startup_frozen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: None) -> None:
    seen = _run(tmp_path, monkeypatch, own_process=True)
    assert seen["preflight"] is False and seen["context"] is False  # startup: no full collections
    enabled, frozen = seen["training"]
    assert enabled is True, "training must run with the collector on (its garbage is freed)"
    # (in this test process startup imports no torch: tens of thousands of objects, not the real 450k)
    assert frozen > 10 * seen["walked"], \
        f"{frozen} objects frozen, {seen['walked']} still walked by every full collection"


def test_in_process_callers_keep_their_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 collector: None) -> None:
    gc.unfreeze()
    seen = _run(tmp_path, monkeypatch, own_process=False)
    assert seen["preflight"] is True and seen["context"] is True
    assert seen["training"] == (True, 0)
