"""When the python-grader jail's kernel layer must be there: as root on Linux (CI, the trainer image's tests) the
worker's namespaces, new root and RLIMIT_NPROC all work, so a test that finds one missing fails instead of
skipping or checking less. Elsewhere (an unprivileged laptop, a restricted pod) it skips and says why."""

from __future__ import annotations

import os
import sys

import pytest

#: root on Linux: unshare(2) and setuid to the grader user are available, so the kernel layer must be active
KERNEL_LAYER_REQUIRED = sys.platform.startswith("linux") and os.getuid() == 0


def require_kernel_layer(present: bool, what: str) -> None:
    """Fail (root on Linux) or skip (elsewhere) when the kernel layer `what` is missing."""
    if present:
        return
    if KERNEL_LAYER_REQUIRED:
        pytest.fail(f"running as root on Linux, the grader jail's kernel layer must be active: {what}")
    pytest.skip(what)
