"""Online DPO (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback") with the job's
grader or judge choosing the preferred answer (TRL's experimental OnlineDPOTrainer).

For each prompt x two answers y_1, y_2 ~ pi_theta(.|x) are sampled; the grader scores both and the better one
is y_w, the other y_l. The DPO loss is applied to that fresh pair against the reference pi_ref:
    L = -log sigma( beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ] )
(lossType: sigmoid; ipo is also accepted). Any grader works: rule-based, python, a score_model/label_model
judge (AI feedback) or a reward_model.

Metrics: TRL's `objective/scores`, `objective/scores_margin`, `objective/kl`, `objective/entropy`,
`rewards/chosen`, `rewards/rejected`, `rewards/margins`, `rewards/accuracies`, `logps/*`, plus the grader's
`rewards/<sub-grader>/mean` and `graders/errors`.
"""

from __future__ import annotations

import logging
from typing import Any

from ..graders.rewards import grader_reward
from ..runtime import DataKind, TrainContext, TrainResult

DATA = DataKind.PROMPT_ONLY
log = logging.getLogger(__name__)


def reference_model(ctx: TrainContext) -> Any:
    """TRL's online DPO uses the base with adapters off as reference; for reference.kind=adapter we pass a
    frozen copy of base + that adapter instead (one more copy of the weights)."""
    if ctx.spec.model.reference.kind != "adapter":
        return None
    from peft import PeftModel
    ref = PeftModel.from_pretrained(ctx.models.base(), ctx.models.resolve(ctx.spec.model.reference.adapter))
    ref = ref.merge_and_unload().eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def run(ctx: TrainContext, *, judge: Any = None) -> TrainResult:
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    hp = ctx.hp
    loss_type = hp.loss_type or "sigmoid"  # sigmoid or ipo: the spec rejects the rest (ONLINE_DPO_LOSS_TYPES)
    # TRL's experimental OnlineDPOTrainer cannot evaluate (its prediction step fails); the eval split is still
    # used by spec.evaluation after training.
    if ctx.eval_dataset is not None:
        log.info("online-dpo: no in-training evaluation (TRL's OnlineDPOTrainer does not support it); "
                 "spec.evaluation still scores the policy on the eval split after training")
    args = ctx.trainer_args(OnlineDPOConfig, beta=hp.beta, loss_type=loss_type, max_new_tokens=hp.max_completion_length,
                            temperature=hp.temperature, top_p=hp.top_p, eval_strategy="no")
    reward = grader_reward(ctx, judge=judge)
    trainer = OnlineDPOTrainer(model=ctx.models.policy(), ref_model=reference_model(ctx), reward_funcs=[reward],
                               args=args, train_dataset=ctx.train_dataset,
                               processing_class=ctx.tokenizer, callbacks=ctx.callbacks)
    try:
        return ctx.train(trainer)
    finally:
        reward.grader.close()
