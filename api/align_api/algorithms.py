"""The one table of algorithms: what each one is and needs.

Validation (spec.py), the CRD's rules (crd.py), the generated docs (docs.py: docs/spec.md), the hyperparameters'
"Used by" lists (hyperparameters.py) and the trainer's registry (align_trainer.algorithms.ALGORITHMS) all read
TABLE; a test fails when any of them disagrees with it.

Some settings change what an algorithm runs (reft's rlStage, rlaif's feedback): those are its `variants`, each
with its own training loop and the hyperparameters it does not read. `accepted(algorithm, variant)` in
hyperparameters.py is the resulting (algorithm, variant) -> hyperparameters relation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .constants import Algorithm as A

Family = Literal["supervised", "reward-model", "offline-preference", "online-rl", "recipe"]
#: "trl": a TRL/HF Trainer (FSDP, Liger); "own": our own loop (ddp only)
Loop = Literal["trl", "own"]

PPO_ONLY = frozenset({"vf_coef", "clip_range_value", "gamma", "lam", "adaptive_kl", "target_kl", "kl_horizon",
                      "whiten_rewards"})


@dataclass(frozen=True)
class Variant:
    """A value of a hyperparameter that changes what runs (e.g. reft with rlStage: ppo)."""

    setting: str  #: the Hyperparameters field, e.g. "rl_stage"
    value: str
    loop: Loop
    #: hyperparameters of the algorithm that this variant does not read (setting one is an error)
    ignores: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AlgorithmInfo:
    family: Family
    summary: str
    loop: Loop | None  #: the training loop; None: each variant says
    online: bool  #: samples from the policy while training (needs spec.grader)
    reference: bool  #: trains against a frozen reference (model.reference applies)
    beta: bool = False  #: beta is the DPO-family inverse temperature (> 0)
    iterative: bool = False  #: may instead run rounds of sample -> grade -> train (hyperparameters.rounds)
    vllm: bool = False  #: TRL can generate with vLLM
    policy_gradient: bool = False  #: a policy-gradient loss with a KL penalty and ratio clipping
    ppo: bool = False  #: (some variant) runs our PPO loop with a value head
    variants: tuple[Variant, ...] = field(default=())

    @property
    def loops(self) -> frozenset[Loop]:
        """Every loop some variant runs."""
        return frozenset(v.loop for v in self.variants) if self.loop is None else frozenset({self.loop})


TABLE: dict[A, AlgorithmInfo] = {
    A.SFT: AlgorithmInfo("supervised", "supervised fine-tuning on demonstrations", "trl", online=False,
                         reference=False),
    A.REWARD: AlgorithmInfo("reward-model", "a sequence-classification reward model from preference pairs", "trl",
                            online=False, reference=False),
    A.DPO: AlgorithmInfo("offline-preference", "Direct Preference Optimization", "trl", online=False,
                         reference=True, beta=True, iterative=True),
    A.KTO: AlgorithmInfo("offline-preference", "Kahneman-Tversky Optimization (unpaired labels)", "trl",
                         online=False, reference=True, beta=True),
    A.CPO: AlgorithmInfo("offline-preference", "Contrastive Preference Optimization", "trl", online=False,
                         reference=False, beta=True),
    A.SIMPO: AlgorithmInfo("offline-preference", "SimPO (length-normalised, reference-free)", "trl", online=False,
                           reference=False, beta=True),
    A.ORPO: AlgorithmInfo("offline-preference", "Odds-Ratio Preference Optimization", "trl", online=False,
                          reference=False, beta=True),
    A.RPO: AlgorithmInfo("offline-preference", "Reward-aware Preference Optimization (Nemotron-4)", "trl",
                         online=False, reference=True, beta=True, iterative=True),
    A.PPO: AlgorithmInfo("online-rl", "PPO with a value head (TRL dropped it in 1.14)", "own", online=True,
                         reference=True, policy_gradient=True, ppo=True),
    A.GRPO: AlgorithmInfo("online-rl", "Group Relative Policy Optimization", "trl", online=True, reference=True,
                          vllm=True, policy_gradient=True),
    A.RLOO: AlgorithmInfo("online-rl", "REINFORCE Leave-One-Out", "trl", online=True, reference=True, vllm=True,
                          policy_gradient=True),
    A.ONLINE_DPO: AlgorithmInfo("online-rl", "online DPO (pairs sampled and judged during training)", "trl",
                                online=True, reference=True, beta=True, vllm=True),
    A.REFT: AlgorithmInfo("recipe", "ReFT: SFT warm-up, then PPO or GRPO", None, online=True, reference=True,
                          policy_gradient=True, ppo=True, variants=(
                              Variant("rl_stage", "grpo", "trl", ignores=PPO_ONLY),
                              Variant("rl_stage", "ppo", "own", ignores=frozenset({"scale_rewards", "loss_type"})))),
    A.RLAIF: AlgorithmInfo("recipe", "RL from AI feedback: PPO on a judge's scores or on a reward model", "own",
                           online=True, reference=True, policy_gradient=True, ppo=True, variants=(
                               Variant("feedback", "direct", "own",
                                       ignores=frozenset({"reward_model_epochs", "reward_model_learning_rate",
                                                          "eval_steps"})),
                               Variant("feedback", "preference", "own"))),
    A.TPO: AlgorithmInfo("recipe", "Thought Preference Optimization (rounds of DPO on judged answers)", "own",
                         online=True, reference=True, beta=True),
}

#: the trainer module of each algorithm (align_trainer.algorithms.ALGORITHMS)
MODULES: dict[A, str] = {a: f"align_trainer.algorithms.{a.value.replace('-', '_')}" for a in TABLE}


def variant_of(algorithm: A, settings: object) -> Variant | None:
    """The variant `settings` (a Hyperparameters) selects, None for an algorithm without variants."""
    for variant in TABLE[algorithm].variants:
        if getattr(settings, variant.setting) == variant.value:
            return variant
    return None


def loop_of(algorithm: A, settings: object) -> Loop:
    """The training loop that runs: reft with rlStage: ppo runs our own loop, with grpo TRL's."""
    variant = variant_of(algorithm, settings)
    return variant.loop if variant is not None else TABLE[algorithm].loop


def where(**properties: object) -> frozenset[A]:
    """The algorithms whose table entry has all these properties, e.g. where(online=True)."""
    return frozenset(a for a, info in TABLE.items() if all(getattr(info, k) == v for k, v in properties.items()))


PREFERENCE_ALGORITHMS = where(family="offline-preference")
REFERENCE_ALGORITHMS = where(reference=True)
ONLINE_ALGORITHMS = where(online=True)
BETA_ALGORITHMS = where(beta=True)
ITERATIVE_ALGORITHMS = where(iterative=True)
