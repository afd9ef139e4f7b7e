"""Container images for the tests marked `containers`: built once per session by scripts/build_images.sh
(cached under ~/.cache/align-images; a rebuild re-runs only what changed). A missing podman fails loudly."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRAINER_IMAGE = os.environ.get("ALIGN_TRAINER_IMAGE", "localhost/align-trainer:dev")
OPERATOR_IMAGE = os.environ.get("ALIGN_OPERATOR_IMAGE", "localhost/align-operator:dev")


def _build(which: str) -> None:
    if shutil.which("podman") is None and os.geteuid() != 0:
        pytest.fail("podman is missing: apt-get install podman runc debootstrap (scripts/build_images.sh does, as root)",
                    pytrace=False)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "build_images.sh"), which], capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build_images.sh {which} failed:\n{proc.stderr[-4000:]}", pytrace=False)


@pytest.fixture(scope="session")
def trainer_image() -> str:
    _build("trainer")
    return TRAINER_IMAGE


@pytest.fixture(scope="session")
def operator_image() -> str:
    _build("operator")
    return OPERATOR_IMAGE
