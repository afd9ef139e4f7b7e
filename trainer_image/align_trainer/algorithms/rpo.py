"""Reward-aware Preference Optimization (NVIDIA, "Nemotron-4 340B Technical Report", 2024, sec. 3.4.3).

Not TRL's "RPO" (DPO + an NLL term on the chosen answer, Pang et al. 2024): that one is `rpoAlpha` of dpo.

DPO pushes every pair apart as if all were equally far apart: a nearly tied pair gets the same push as a clear one,
so it overfits tiny quality gaps and unlearns good "rejected" answers. RPO instead makes the policy's implicit
reward gap match the reward gap of the pair, r* from a reward model / grader or from the data:

    h_pi(x, y_w, y_l) = log pi(y_w|x)/pi_ref(y_w|x) - log pi(y_l|x)/pi_ref(y_l|x)       (implicit reward gap)
    a = beta * h_pi                                                                  (the policy's gap)
    b = eta * (r*(x, y_w) - r*(x, y_l))                                              (the reward's gap)
    L_RPO = E[ D(a || b) ]

with the distance D chosen by `lossType` (NeMo-Aligner's rpo_bwd_kl, rpo_fwd_kl, rpo_sq):

    bwd_kl (default, the report's):  D = KL( Bern(sigma(b)) || Bern(sigma(a)) )
                                       = sigma(b) log(sigma(b)/sigma(a)) + (1 - sigma(b)) log((1 - sigma(b))/(1 - sigma(a)))
    fwd_kl:                          D = KL( Bern(sigma(a)) || Bern(sigma(b)) )
    sq:                              D = (a - b)^2

Every D is minimal (0) at a = b: a pair with a larger reward gap pulls the implicit gap further; a tie (b = 0)
pulls it to 0 instead of apart. The reward gaps are computed once before training (align_trainer.reward_gaps).

Built on TRL's DPOTrainer (tokenisation, reference handling, precomputed reference log-probs, metrics):
only the loss is ours, plus a collator that carries each pair's `reward_gap`. Metrics: TRL's rewards/chosen,
rewards/rejected, rewards/margins, rewards/accuracies, logps/*, and rpo/target_margin (mean b),
rpo/margin_error (mean |a - b|), rpo/reward_gap_mean|std, rpo/negative_gaps.

With `rounds`, pairs come from the policy's own samples instead (align_trainer.preference_rounds).
"""

from __future__ import annotations

from typing import Any

from .. import preference_rounds
from ..reward_gaps import GAP, gap_stats, reward_gaps, with_gaps
from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PREFERENCE
LOSS_TYPES = ("bwd_kl", "fwd_kl", "sq")
DEFAULT_LOSS = "bwd_kl"


def data_kind(spec: Any) -> DataKind:
    """Offline: preference pairs. Iterative rounds: the prompts only (any dataset with prompts)."""
    return DataKind.PROMPT_ONLY if spec.hyperparameters.rounds else DATA


def rpo_loss(implicit_gap: Any, reward_gap: Any, *, beta: float, eta: float, loss_type: str = DEFAULT_LOSS) -> Any:
    """Per-pair D(beta * implicit_gap || eta * reward_gap) (see the module docstring)."""
    import torch.nn.functional as F
    a = beta * implicit_gap
    b = eta * reward_gap.to(a.dtype)
    if loss_type == "sq":
        return (a - b) ** 2
    log_pa, log_qa = F.logsigmoid(a), F.logsigmoid(-a)   # log sigma(a), log (1 - sigma(a))
    log_pb, log_qb = F.logsigmoid(b), F.logsigmoid(-b)
    if loss_type == "bwd_kl":
        return log_pb.exp() * (log_pb - log_pa) + log_qb.exp() * (log_qb - log_qa)
    if loss_type == "fwd_kl":
        return log_pa.exp() * (log_pa - log_pb) + log_qa.exp() * (log_qa - log_qb)
    raise ValueError(f"unknown rpo loss type {loss_type!r}; expected one of {LOSS_TYPES}")


class GapCollator:
    """TRL's preference collator plus each pair's reward gap as a (B,) tensor."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        batch = self.inner(examples)
        batch[GAP] = torch.tensor([float(e[GAP]) for e in examples], dtype=torch.float32)
        return batch


def trainer_class() -> type:
    """DPOTrainer with the RPO loss (a function so that importing this module does not import TRL)."""
    import torch
    from trl import DPOTrainer

    class RPOTrainer(DPOTrainer):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, eta: float, rpo_loss_type: str, **kwargs: Any):
            super().__init__(*args, **kwargs)  # precomputes reference log-probs with TRL's collator (no gap needed)
            self.eta, self.rpo_loss_type = eta, rpo_loss_type
            self.data_collator = GapCollator(self.data_collator)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if GAP not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, GAP]

        def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
            return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != GAP})

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
            mode = "train" if self.model.training else "eval"
            reward_gap = inputs[GAP]
            non_model = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", GAP}
            model_kwargs = {k: v for k, v in inputs.items() if k not in non_model}
            model_kwargs["use_cache"] = False
            completion_mask = inputs["completion_mask"]
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)  # TRL's fused per-token log-probs
            logps = outputs.log_probs[:, -(completion_mask.size(1) - 1):].sum(dim=1)  # 0 where labels are -100
            chosen_logps, rejected_logps = logps.chunk(2, dim=0)  # batch is [chosen, rejected]
            if self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:  # TRL's reference pass: "ref" adapter, adapters disabled, or ref_model
                ref_model = self.ref_model if self.ref_model is not None else self.model
                ref_chosen, ref_rejected = self.compute_ref_log_probs(ref_model, inputs)
            chosen_ratio = chosen_logps - ref_chosen.to(chosen_logps.device)
            rejected_ratio = rejected_logps - ref_rejected.to(chosen_logps.device)
            implicit_gap = chosen_ratio - rejected_ratio                      # h_pi
            loss = rpo_loss(implicit_gap, reward_gap.to(implicit_gap.device), beta=self.beta, eta=self.eta,
                            loss_type=self.rpo_loss_type).mean()
            self._log_pair_metrics(mode, chosen_logps, rejected_logps, chosen_ratio, rejected_ratio, reward_gap)
            if return_outputs:
                with torch.no_grad():
                    outputs = model(**model_kwargs)
                return loss, outputs
            return loss

        def _log_pair_metrics(self, mode: str, chosen_logps: Any, rejected_logps: Any, chosen_ratio: Any,
                              rejected_ratio: Any, reward_gap: Any) -> None:
            gather = self.accelerator.gather
            chosen_rewards = self.beta * chosen_ratio.detach()
            rejected_rewards = self.beta * rejected_ratio.detach()
            margins = chosen_rewards - rejected_rewards
            target = self.eta * reward_gap.to(margins.device)
            metrics = self._metrics[mode]
            metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
            metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
            metrics["rewards/margins"].append(gather(margins).mean().item())
            metrics["rewards/accuracies"].append(gather((margins > 0).float()).mean().item())
            metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
            metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
            metrics["rpo/target_margin"].append(gather(target).mean().item())
            metrics["rpo/margin_error"].append(gather((margins - target).abs()).mean().item())

    return RPOTrainer


def loss_settings(hp: Any) -> dict[str, Any]:
    """The RPO trainer's own loss knobs from the spec (pure; unit-tested)."""
    return dict(eta=float(hp.eta), rpo_loss_type=hp.loss_type or DEFAULT_LOSS)


def build_trainer(ctx: TrainContext, model: Any, train_dataset: Any, eval_dataset: Any = None, *,
                  callbacks: list[Any] | None = None, **config: Any) -> Any:
    """An RPO trainer for `model` on datasets that already carry `reward_gap`; `config` overrides DPOConfig."""
    from trl import DPOConfig
    hp = ctx.hp
    args = ctx.trainer_args(DPOConfig, beta=hp.beta, loss_type=["sigmoid"], **config)  # TRL's own loss is unused
    return trainer_class()(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                           processing_class=ctx.tokenizer, callbacks=callbacks, **loss_settings(hp))


def round_trainer(ctx: TrainContext, model: Any, pairs: Any, round_no: int) -> Any:
    """Iterative rpo: the round's best-vs-worst pairs carry the grader's gap already."""
    return build_trainer(ctx, model, pairs, **preference_rounds.round_args(ctx, round_no))


def run(ctx: TrainContext) -> TrainResult:
    if ctx.hp.rounds:
        return preference_rounds.run(ctx, "rpo", round_trainer)
    gaps = reward_gaps(ctx, ctx.train_dataset, "train")
    ctx.metrics.log(gap_stats(gaps), step=0)
    train = with_gaps(ctx.train_dataset, gaps)
    evals = with_gaps(ctx.eval_dataset, reward_gaps(ctx, ctx.eval_dataset, "eval")) \
        if ctx.eval_dataset is not None else None
    trainer = build_trainer(ctx, ctx.models.policy(), train, evals, callbacks=ctx.callbacks)
    ctx.models.bind_reference(trainer.model)
    return ctx.train(trainer)
