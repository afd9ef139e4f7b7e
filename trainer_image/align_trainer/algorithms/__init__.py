"""The one table of algorithms. Each module is self-contained and exposes `run(ctx) -> TrainResult`.

Modules are imported lazily so that importing the table does not import TRL for every algorithm.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from align_api.constants import Algorithm

ALGORITHMS: dict[Algorithm, str] = {
    Algorithm.SFT: "align_trainer.algorithms.sft",
    Algorithm.REWARD: "align_trainer.algorithms.reward",
    Algorithm.DPO: "align_trainer.algorithms.dpo",
    Algorithm.KTO: "align_trainer.algorithms.kto",
    Algorithm.CPO: "align_trainer.algorithms.cpo",
    Algorithm.SIMPO: "align_trainer.algorithms.simpo",
    Algorithm.ORPO: "align_trainer.algorithms.orpo",
    Algorithm.PPO: "align_trainer.algorithms.ppo",
    Algorithm.GRPO: "align_trainer.algorithms.grpo",
    Algorithm.RLOO: "align_trainer.algorithms.rloo",
    Algorithm.ONLINE_DPO: "align_trainer.algorithms.online_dpo",
    Algorithm.REFT: "align_trainer.algorithms.reft",
    Algorithm.RLAIF: "align_trainer.algorithms.rlaif",
    Algorithm.TPO: "align_trainer.algorithms.tpo",
    Algorithm.RPO: "align_trainer.algorithms.rpo",
}


def load(algorithm: Algorithm | str) -> ModuleType:
    """The module implementing `algorithm`."""
    return importlib.import_module(ALGORITHMS[Algorithm(algorithm)])
