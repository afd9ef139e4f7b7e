"""The trainer's registry of algorithms (from align_api.algorithms.TABLE). Each module is self-contained and exposes `run(ctx) -> TrainResult`.

Modules are imported lazily so that importing the table does not import TRL for every algorithm.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from align_api.algorithms import MODULES
from align_api.constants import Algorithm

#: algorithm -> its module: align_api.algorithms.MODULES, from the one table (what each algorithm is and needs)
ALGORITHMS: dict[Algorithm, str] = dict(MODULES)


def load(algorithm: Algorithm | str) -> ModuleType:
    """The module implementing `algorithm`."""
    return importlib.import_module(ALGORITHMS[Algorithm(algorithm)])
