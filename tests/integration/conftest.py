"""Fixtures shared by the integration tests."""

from __future__ import annotations

from typing import Iterator

import pytest


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread, and this machine's cores are shared: intra-op threads that wait
    on each other under contention make steps ~10x slower. Use with `pytest.mark.usefixtures`."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
