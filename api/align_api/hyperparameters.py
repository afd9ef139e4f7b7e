"""spec.hyperparameters: one object, validated against the algorithm it is used with.

Every field says which algorithms use it; setting a field the chosen algorithm does not use is an error
(it would otherwise be silently ignored).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .common import SpecModel
from .algorithms import ITERATIVE_ALGORITHMS, TABLE, variant_of, where
from .constants import Algorithm as A

ALL = tuple(A)


def _where(**properties: object) -> tuple[A, ...]:
    """The algorithms of the table with these properties, in the enum's order (stable "Used by" lists)."""
    found = where(**properties)
    return tuple(a for a in A if a in found)


#: the groups the fields below are declared with, all from the algorithm table
ITERATIVE = _where(iterative=True)  # they sample in rounds, so they take the generation knobs (with `rounds`)
GENERATIVE = _where(online=True)
POLICY_GRADIENT = _where(policy_gradient=True)
VLLM = _where(vllm=True)  # TRL can hand their generation to vLLM (`use_vllm`)
TRL_TRAINERS = _where(loop="trl")  # trained by a TRL/HF Trainer (its `use_liger_kernel`)
PPO_LOOP = _where(ppo=True)  # reft with rlStage: ppo, too
BETA = _where(beta=True)

DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard",
                  "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft")
CPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo")
KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")
#: the loss types whose formula reads labelSmoothing (TRL 1.16 DPOTrainer / CPOTrainer); with any other it is ignored
SMOOTHED_DPO_LOSSES = ("robust", "exo_pair", "aot", "aot_unpaired")
SMOOTHED_CPO_LOSSES = ("sigmoid",)
#: Reward-aware PO distances (Nemotron-4 340B; NeMo-Aligner calls them rpo_bwd_kl, rpo_fwd_kl, rpo_sq)
RPO_LOSS_TYPES = ("bwd_kl", "fwd_kl", "sq")
ONLINE_DPO_LOSS_TYPES = ("sigmoid", "ipo")
#: TRL GRPOConfig.loss_type values that work with token-level importance sampling (formulas: docs/algorithms.md)
GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")


def _all_but(*excluded: A) -> tuple[A, ...]:
    return tuple(a for a in ALL if a not in excluded)


#: Why an algorithm (or a variant) does not take a field that most do: validation's error says it.
WHY_NOT: dict[tuple[str, A], str] = {
    ("max_prompt_length", A.SFT): "it trains on whole conversations; maxLength cuts their start",
    ("eval_steps", A.PPO): "its loop has no in-training evaluation; spec.evaluation scores the eval split after "
                           "training",
    ("eval_steps", A.RLAIF): "the PPO loop has no in-training evaluation; spec.evaluation scores the eval split "
                             "after training",
    ("num_generations", A.ONLINE_DPO): "TRL samples 2 per prompt",
}

#: field name -> algorithms that use it (filled by `hp` below).
APPLIES_TO: dict[str, tuple[A, ...]] = {}


def hp(default: Any, description: str, algorithms: tuple[A, ...] = ALL, **bounds: Any) -> Any:
    """A hyperparameter field whose description lists the algorithms it applies to."""
    used = "all algorithms" if algorithms == ALL else ", ".join(a.value for a in algorithms)
    shown = "unset" if default is None else str(default).lower() if isinstance(default, bool) else default
    return Field(default=default, description=f"{description} Default: {shown}. Used by: {used}.",
                 json_schema_extra={"x-align-algorithms": [a.value for a in algorithms]}, **bounds)


class Hyperparameters(SpecModel):
    """Training hyperparameters. Unset fields take the algorithm's default."""

    # --- optimisation (all) ---
    epochs: int = hp(1, "Passes over the training data.", ge=1, le=1000)
    max_steps: int | None = hp(None, "Stop after this many optimizer steps (overrides epochs).", ge=1, le=10_000_000)
    batch_size: int = hp(8, "Per-device micro-batch size (sequences or prompts).", ge=1, le=4096)
    gradient_accumulation_steps: int = hp(1, "Micro-batches per optimizer step.", ge=1, le=1024)
    learning_rate: float = hp(1e-4, "Peak learning rate of the adapter. Useful values for AdamW on LoRA lie around "
                              "1e-6..1e-3; up to 100 is accepted, so that a run that diverges is stopped by the "
                              "trainer as Diverged instead of refused (the bound catches typos such as 1e4).",
                              gt=0, le=100)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"] = hp(
        "linear", "Learning-rate schedule (cosine_with_min_lr decays to 10% of the peak).")
    warmup_ratio: float = hp(0.0, "Fraction of steps used for linear warm-up.", ge=0, le=0.5)
    weight_decay: float = hp(0.0, "AdamW weight decay.", ge=0, le=1)
    max_grad_norm: float = hp(1.0, "Gradient clipping norm.", gt=0, le=1e4)
    max_length: int = hp(512, "Maximum tokens per sequence (prompt + completion); longer rows are truncated. "
                         "Offline rows keep their answers (prompts are cut from the left); where the policy generates "
                         "(but tpo), prompts are cut from the left to maxLength - maxCompletionLength tokens, which "
                         "must leave at least 4.", ge=8, le=131072)
    max_prompt_length: int | None = hp(None, "Maximum prompt tokens (cut from the left, chat template included). Not "
                                       "sft's: it trains on whole conversations, maxLength cuts their start.",
                                       _all_but(A.SFT), ge=4, le=131072)
    seed: int = hp(42, "Random seed for data order, initialisation and sampling.", ge=0, le=2**32 - 1)
    gradient_checkpointing: bool = hp(False, "Recompute activations in the backward pass to save memory (TRL's "
                                      "gradient_checkpointing; our PPO loop enables it on the policy).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = hp("auto", "Mixed precision; auto = bf16 on capable GPUs, fp32 on CPU.")
    logging_steps: int = hp(1, "Log metrics every N steps.", ge=1, le=100000)
    eval_steps: int | None = hp(None, "Evaluate on the eval split every N steps (default: end of each epoch). Not "
                                "ppo's (nor rlaif's with feedback: direct): their loop has no in-training evaluation "
                                "(spec.evaluation scores the eval split after training).", _all_but(A.PPO), ge=1)
    completion_only_loss: bool = hp(True, "SFT: compute the loss on assistant/completion tokens only.", (A.SFT, A.REFT))
    packing: bool = hp(False, "SFT: pack several examples into rows of maxLength tokens, padding-free (examples do "
                       "not attend to each other); about 2x real tokens/s on mixed lengths.", (A.SFT,))
    padding_free: bool = hp(False, "SFT: no padding and no packing: each micro-batch's examples are concatenated into "
                            "one row with per-example position ids, so no compute goes to pad tokens and examples "
                            "do not attend to each other (TRL padding_free). Fastest with flash_attention_2; "
                            "packing implies it. Not offered for dpo: TRL's DPOTrainer has it disabled.", (A.SFT,))

    # --- DPO family ---
    beta: float = hp(0.1, "Inverse temperature of the implicit reward (DPO-family; ORPO's lambda). Must be > 0.",
                     BETA, gt=0, le=100)
    loss_type: str | None = hp(None, "Loss variant. dpo, tpo: " + ", ".join(DPO_LOSS_TYPES) + "; cpo: "
                               + ", ".join(CPO_LOSS_TYPES) + "; kto: " + ", ".join(KTO_LOSS_TYPES) + "; online-dpo: "
                               + ", ".join(ONLINE_DPO_LOSS_TYPES) + "; grpo, reft (GRPO stage): "
                               + ", ".join(GRPO_LOSS_TYPES) + " (unset: TRL's dapo); rpo: "
                               + ", ".join(RPO_LOSS_TYPES) + " (default bwd_kl).",
                               (A.DPO, A.CPO, A.KTO, A.ONLINE_DPO, A.TPO, A.GRPO, A.REFT, A.RPO))
    label_smoothing: float = hp(0.0, "Label noise: the probability that a preference label is flipped. dpo: only "
                                "with lossType " + ", ".join(SMOOTHED_DPO_LOSSES) + " (TRL's sigmoid loss has no "
                                "smoothing); cpo: with its sigmoid loss (conservative, as in cDPO).", (A.DPO, A.CPO),
                                ge=0, lt=0.5)
    desirable_weight: float = hp(1.0, "KTO weight of desirable examples.", (A.KTO,), gt=0, le=100)
    undesirable_weight: float = hp(1.0, "KTO weight of undesirable examples.", (A.KTO,), gt=0, le=100)
    simpo_gamma: float = hp(0.5, "SimPO target reward margin (gamma / beta ratio term).", (A.SIMPO,), ge=0, le=100)
    cpo_alpha: float = hp(1.0, "Weight of the NLL term in CPO (0 for pure SimPO).", (A.CPO, A.SIMPO), ge=0, le=100)
    rpo_alpha: float | None = hp(None, "DPO + NLL: add an NLL term on the chosen answer with this weight (Pang et al. "
                                 "2024, what TRL calls RPO). Not reward-aware preference optimization: for that "
                                 "use algorithm: rpo. TPO: keeps the warmed-up thought format in the DPO rounds.", (A.DPO, A.TPO),
                                 ge=0, le=100)
    eta: float = hp(1.0, "RPO: scale of the reward gap r(x,y_w) - r(x,y_l) that beta times the implicit reward gap "
                    "is matched to.", (A.RPO,), gt=0, le=1000)
    center_rewards_coefficient: float | None = hp(None, "Reward model: penalise non-zero mean rewards.", (A.REWARD,), ge=0, le=10)

    # --- generation (online) ---
    num_generations: int = hp(4, "Completions sampled per prompt (group size; TPO's and iterative dpo/rpo's K). Not "
                              "online-dpo's: TRL samples 2 per prompt.",
                              tuple(a for a in GENERATIVE + ITERATIVE if a != A.ONLINE_DPO), ge=2, le=64)
    max_completion_length: int = hp(64, "Maximum generated tokens per completion.", GENERATIVE + ITERATIVE, ge=1, le=32768)
    temperature: float = hp(1.0, "Sampling temperature for generation.", GENERATIVE + ITERATIVE, gt=0, le=5)
    top_p: float = hp(1.0, "Nucleus sampling for generation.", GENERATIVE + ITERATIVE, gt=0, le=1)

    # --- GPU speed-ups (CUDA only; see docs/performance.md) ---
    vllm: Literal["off", "colocate", "server"] = hp(
        "off", "Generate with vLLM (TRL use_vllm): colocate = a vLLM engine in the trainer process sharing its "
               "GPU; server = a separate `trl vllm-serve` at vllmServerUrl. Needs GPUs and the vllm package.", VLLM)
    vllm_server_url: str | None = hp(None, "vllm: server: base URL of the `trl vllm-serve` server "
                                     "(e.g. http://vllm:8000).", VLLM, pattern=r"^https?://[^\s]+$", max_length=2048)
    vllm_gpu_memory_utilization: float = hp(0.3, "vllm: colocate: fraction of GPU memory vLLM may take.", VLLM,
                                            gt=0, le=0.95)
    liger_kernel: bool = hp(False, "Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear + "
                            "cross-entropy) for less memory and faster steps. Needs GPUs and the liger-kernel "
                            "package.", TRL_TRAINERS)

    # --- policy gradient ---
    kl_coef: float = hp(0.05, "Coefficient of the KL penalty to the reference (GRPO/RLOO beta, PPO init KL coef).",
                        POLICY_GRADIENT, ge=0, le=10)
    clip_range: float = hp(0.2, "PPO/GRPO ratio clip epsilon.", (A.PPO, A.GRPO, A.RLOO, A.REFT, A.RLAIF), gt=0, le=1)
    num_iterations: int = hp(1, "Optimisation passes per batch of generations (PPO epochs / GRPO mu).", POLICY_GRADIENT, ge=1, le=64)
    vf_coef: float = hp(0.1, "PPO value-loss coefficient.", PPO_LOOP, gt=0, le=10)
    clip_range_value: float = hp(0.2, "PPO value clipping.", PPO_LOOP, gt=0, le=10)
    gamma: float = hp(1.0, "PPO discount factor.", PPO_LOOP, ge=0, le=1)
    lam: float = hp(0.95, "PPO GAE lambda.", PPO_LOOP, ge=0, le=1)
    adaptive_kl: bool = hp(False, "PPO adaptive KL controller (Ziegler et al. 2019).", PPO_LOOP)
    target_kl: float = hp(6.0, "Target KL for the adaptive controller.", PPO_LOOP, gt=0, le=1000)
    kl_horizon: int = hp(10_000, "Adaptive KL horizon: beta moves by at most 20% x completions per step / horizon "
                         "each step (Ziegler et al. 2019).", PPO_LOOP, ge=1, le=10_000_000)
    whiten_rewards: bool = hp(False, "PPO: whiten rewards per batch.", PPO_LOOP)
    scale_rewards: Literal["group", "batch", "none"] = hp("group", "GRPO reward scaling: divide the group-centred "
                                                          "reward by the group's std, the batch's, or not at all.",
                                                          (A.GRPO, A.REFT))

    # --- recipe-specific ---
    warmup_epochs: int = hp(1, "ReFT: SFT warm-up epochs before RL. TPO: SFT epochs on the rows' written thoughts "
                            "(`thought` + `answer`, or an `answer` containing <R>) before the first round; "
                            "rows without one are skipped.", (A.REFT, A.TPO), ge=0, le=100)
    warmup_learning_rate: float | None = hp(None, "ReFT: learning rate of the SFT warm-up (unset: learningRate). "
                                            "Luong et al. warm up with a larger rate than the RL stage's.",
                                            (A.REFT,), gt=0, le=10)
    rl_stage: Literal["grpo", "ppo"] = hp("grpo", "ReFT: the RL stage after the warm-up: ppo (as in Luong et al. "
                                          "2024, with a value head) or grpo (group baseline).", (A.REFT,))
    rounds: int | None = hp(None, "Iterations of sample K answers -> score with spec.grader -> train on best vs worst, "
                            "each from the last policy. tpo: 2 when unset. dpo/rpo: unset trains once on the "
                            "dataset's pairs; set, the dataset only provides prompts.", (A.TPO,) + ITERATIVE,
                            ge=1, le=50)
    round_reference: Literal["fixed", "previous"] = hp(
        "previous", "Iterative dpo/rpo: the reference of round n is the policy after round n-1 (previous; as in "
                    "Nemotron-4's iterative RPO and self-rewarding DPO) or the starting reference in every round "
                    "(fixed).", ITERATIVE)
    thought_prompt: str | None = hp(None, "TPO: instruction that asks for a hidden thought then the answer "
                                    "(a default generic prompt when unset).", (A.TPO,), max_length=8000)
    reward_model_epochs: int = hp(3, "RLAIF preference: epochs of reward-model training on the judge's pairs.",
                                  (A.RLAIF,), ge=1, le=100)
    reward_model_learning_rate: float | None = hp(None, "RLAIF preference: learning rate of the reward model "
                                                  "(learningRate when unset).", (A.RLAIF,), gt=0, le=1)
    feedback: Literal["direct", "preference"] = hp(
        "direct", "RLAIF: direct = the AI judge's score is the PPO reward; preference = the judge labels "
                  "sampled pairs, a reward model is trained on them, then PPO uses it.", (A.RLAIF,))

    def explicitly_set(self) -> set[str]:
        return set(self.model_fields_set)


def algorithms_for(field: str) -> tuple[A, ...]:
    extra = Hyperparameters.model_fields[field].json_schema_extra or {}
    return tuple(A(a) for a in extra.get("x-align-algorithms", ()))  # type: ignore[union-attr]


#: Hyperparameters iterative dpo/rpo read only in rounds (setting them without `rounds` would be silently ignored).
ROUND_ONLY = ("num_generations", "max_completion_length", "temperature", "top_p", "round_reference")


def used_by(name: str, algorithm: A, hp: Hyperparameters) -> bool:
    """Whether `algorithm` (with these hyperparameters: reft's rlStage, rlaif's feedback, dpo/rpo's rounds) reads
    the field `name`."""
    variant = variant_of(algorithm, hp)
    return algorithm in algorithms_for(name) and not (variant is not None and name in variant.ignores) \
        and not (algorithm in ITERATIVE_ALGORITHMS and hp.rounds is None and name in ROUND_ONLY)


def variants(algorithm: A) -> tuple[dict[str, Any], ...]:
    """The settings that select each variant of `algorithm` ({} alone for one without variants), as
    Hyperparameters field -> value: ({"rl_stage": "grpo"}, {"rl_stage": "ppo"}) for reft, and for iterative
    dpo/rpo once without rounds and once with ({"rounds": None}, {"rounds": 2})."""
    if algorithm in ITERATIVE_ALGORITHMS:
        return ({"rounds": None}, {"rounds": 2})
    return tuple({v.setting: v.value} for v in TABLE[algorithm].variants) or ({},)


def accepted(algorithm: A, variant: dict[str, Any] | None = None) -> frozenset[str]:
    """The Hyperparameters fields `algorithm` accepts (in that variant, one of variants(algorithm); default: its
    first). Setting any other field is refused by validation; the generated knob check walks this relation."""
    settings = Hyperparameters.model_construct(**(variant if variant is not None else variants(algorithm)[0]))
    return frozenset(name for name in Hyperparameters.model_fields if used_by(name, algorithm, settings))


LOSS_TYPES: dict[A, tuple[str, ...]] = {
    A.DPO: DPO_LOSS_TYPES, A.ONLINE_DPO: ONLINE_DPO_LOSS_TYPES, A.TPO: DPO_LOSS_TYPES,
    A.GRPO: GRPO_LOSS_TYPES, A.REFT: GRPO_LOSS_TYPES,
    A.CPO: CPO_LOSS_TYPES, A.KTO: KTO_LOSS_TYPES, A.RPO: RPO_LOSS_TYPES,
}
