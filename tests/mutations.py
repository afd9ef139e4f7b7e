"""Catalogue of hand-made breakages of the online-RL and preference pieces, each with the tests that must fail.

Every named piece of an algorithm must be load-bearing: if it is deleted, its sign flipped or its setting
ignored, some test fails. Each entry below is one such breakage (a one-place source edit) and the tests that
catch it. `scripts/mutation_check.py` applies each edit to a scratch copy of the tree, runs the named tests and
reports any breakage that leaves them green; `tests/unit/test_mutation_catalogue.py` keeps the catalogue in step
with the source (every `old` text still occurs exactly once, every named test exists).
"""

from __future__ import annotations

from dataclasses import dataclass

PPO = "trainer_image/align_trainer/algorithms/ppo.py"
GRPO = "trainer_image/align_trainer/algorithms/grpo.py"
ONLINE_DPO = "trainer_image/align_trainer/algorithms/online_dpo.py"
DPO = "trainer_image/align_trainer/algorithms/dpo.py"
KTO = "trainer_image/align_trainer/algorithms/kto.py"
CPO = "trainer_image/align_trainer/algorithms/cpo.py"
SIMPO = "trainer_image/align_trainer/algorithms/simpo.py"
TRAINER_MAIN = "trainer_image/align_trainer/main.py"
TRAINER_METRICS = "trainer_image/align_trainer/metrics.py"
NUMERICS = "trainer_image/align_trainer/numerics.py"
STATUS = "operator/align_operator/status/compute.py"
REFT = "trainer_image/align_trainer/algorithms/reft.py"
TPO = "trainer_image/align_trainer/algorithms/tpo.py"
RLAIF = "trainer_image/align_trainer/algorithms/rlaif.py"
SPEC = "api/align_api/spec.py"
TABLE = "api/align_api/algorithms.py"
TRACK = "operator/align_operator/handlers/track.py"

PIECES = "tests/unit/test_rl_ppo_pieces.py::"
WIRING = "tests/integration/test_rl_config_wiring.py::"
PPO_MATH = "tests/integration/test_rl_ppo_math.py::"
REFT_PIECES = "tests/unit/test_reft_pieces.py::"
REFT_TESTS = "tests/integration/test_rl_reft.py::"
THOUGHTS = "tests/integration/test_rl_thoughts.py::"
RLAIF_PREF = "tests/integration/test_rl_rlaif_preference.py::"
TPO_RLAIF_SPEC = "tests/unit/test_tpo_rlaif_spec.py::"
CHAT_REAL = "tests/integration/test_chat_templates_real.py::"


@dataclass(frozen=True)
class Mutation:
    piece: str       #: what is broken, in the issue's words
    path: str        #: file, relative to the repository root
    old: str         #: text that occurs exactly once in `path`
    new: str         #: its broken replacement (still valid Python)
    tests: tuple[str, ...]  #: pytest node ids; at least one must fail


MUTATIONS: tuple[Mutation, ...] = (
    # PPO (our loop)
    Mutation("ppo: policy clipping removed", PPO,
             "-advantages * ratio.clamp(1 - clip_range, 1 + clip_range))", "-advantages * ratio)",
             (PIECES + "test_policy_clipping_bounds_the_surrogate_and_stops_its_gradient",)),
    Mutation("ppo: value clipping removed", PPO,
             "old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)", "values",
             (PIECES + "test_value_clipping_sign_and_coefficient",)),
    Mutation("ppo: value-loss sign flipped", PPO,
             "return pg_loss, vf_loss, pg_loss + vf_coef * vf_loss", "return pg_loss, vf_loss, pg_loss - vf_coef * vf_loss",
             (PIECES + "test_value_clipping_sign_and_coefficient", PIECES + "test_value_loss_pulls_values_towards_returns")),
    Mutation("ppo: value-loss coefficient ignored", PPO,
             "return pg_loss, vf_loss, pg_loss + vf_coef * vf_loss", "return pg_loss, vf_loss, pg_loss + vf_loss",
             (PIECES + "test_value_clipping_sign_and_coefficient",)),
    Mutation("ppo: raw returns instead of GAE (no value baseline, lambda 1)", PPO,
             "advantages, returns = gae(rewards, values, mask, gamma, lam)",
             "advantages, returns = gae(rewards, values * 0, mask, gamma, 1.0)",
             (PIECES + "test_gae_not_raw_returns_and_whitened_advantages",)),
    Mutation("ppo: GAE lambda ignored", PPO,
             "last = delta + gamma * lam * last", "last = delta + gamma * last",
             (PIECES + "test_gae_not_raw_returns_and_whitened_advantages", PPO_MATH + "test_gae_matches_the_recursion")),
    Mutation("ppo: advantage whitening removed", PPO,
             "return online.whiten(advantages, mask), returns", "return advantages, returns",
             (PIECES + "test_gae_not_raw_returns_and_whitened_advantages",)),
    Mutation("ppo: reward whitening ignored", PPO,
             "    if whiten:\n", "    if False:\n",
             (PIECES + "test_reward_whitening_scales_without_shifting",)),
    Mutation("ppo: reward whitening shifts the mean", PPO,
             "rewards = online.whiten(rewards, mask, shift_mean=False)", "rewards = online.whiten(rewards, mask)",
             (PIECES + "test_reward_whitening_scales_without_shifting",)),
    Mutation("ppo: KL penalty sign flipped", PPO,
             "non_score = -beta * kl", "non_score = beta * kl",
             (PIECES + "test_kl_penalty_sign_coefficient_and_score_on_last_token",)),
    Mutation("ppo: KL coefficient ignored", PPO,
             "non_score = -beta * kl", "non_score = -kl",
             (PIECES + "test_kl_penalty_sign_coefficient_and_score_on_last_token",)),
    Mutation("ppo: score not on the last completion token", PPO,
             "rewards[torch.arange(len(last)), last] += scores", "rewards[:, 0] += scores",
             (PIECES + "test_kl_penalty_sign_coefficient_and_score_on_last_token",)),
    Mutation("ppo: adaptive KL moves beta away from the target", PPO,
             "error = max(-0.2, min(0.2, (kl - self.target) / self.target))",
             "error = max(-0.2, min(0.2, (self.target - kl) / self.target))",
             (PIECES + "test_adaptive_kl_moves_beta_towards_the_target_at_the_horizon_rate",
              PPO_MATH + "test_adaptive_kl_controller")),
    Mutation("ppo: adaptive KL horizon ignored", PPO,
             "self.beta *= 1 + error * n_samples / self.horizon", "self.beta *= 1 + error * n_samples / 10_000",
             (PIECES + "test_adaptive_kl_moves_beta_towards_the_target_at_the_horizon_rate",)),
    Mutation("ppo: rollout statistics from a dropout-on network", PPO,
             "    online.disable_dropout(model)\n", "    pass\n",
             (PPO_MATH + "test_ppo_default_dropout_is_on_policy_and_schedules_follow_the_spec",)),
    # GRPO / RLOO (TRL): spec -> config wiring
    Mutation("grpo/rloo: klCoef ignored", GRPO, "beta=hp.kl_coef, ", "",
             (WIRING + "test_grpo_default_loss_is_dapo_and_rloo_wiring",)),
    Mutation("grpo/rloo: clipRange ignored", GRPO, "epsilon=hp.clip_range,", "",
             (WIRING + "test_grpo_default_loss_is_dapo_and_rloo_wiring",)),
    Mutation("grpo/rloo: numIterations ignored", GRPO, "num_iterations=hp.num_iterations, ", "",
             (WIRING + "test_grpo_default_loss_is_dapo_and_rloo_wiring",)),
    Mutation("grpo/rloo: numGenerations ignored", GRPO, "dict(num_generations=hp.num_generations, ", "dict(",
             (WIRING + "test_grpo_default_loss_is_dapo_and_rloo_wiring",)),
    Mutation("grpo/rloo: temperature ignored", GRPO, "temperature=hp.temperature, top_p", "top_p",
             (WIRING + "test_grpo_default_loss_is_dapo_and_rloo_wiring",)),
    Mutation("grpo/rloo: dropout left on", GRPO, "disable_dropout=True", "disable_dropout=False",
             (WIRING + "test_grpo_default_loss_is_dapo_and_rloo_wiring",)),
    Mutation("grpo: scaleRewards ignored", GRPO, "scale_rewards=hp.scale_rewards, ", "",
             (WIRING + "test_grpo_wiring",)),
    Mutation("grpo: lossType ignored", GRPO, 'loss_type=hp.loss_type or "dapo"', 'loss_type="dapo"',
             (WIRING + "test_grpo_wiring",)),
    # online DPO
    Mutation("online-dpo: beta ignored", ONLINE_DPO, "OnlineDPOConfig, beta=hp.beta, ", "OnlineDPOConfig, ",
             (WIRING + "test_online_dpo_wiring",)),
    Mutation("online-dpo: lossType ignored", ONLINE_DPO, 'loss_type = hp.loss_type or "sigmoid"', 'loss_type = "sigmoid"',
             (WIRING + "test_online_dpo_wiring",)),
    Mutation("online-dpo: temperature ignored", ONLINE_DPO, "temperature=hp.temperature, top_p=hp.top_p, eval_strategy",
             "top_p=hp.top_p, eval_strategy", (WIRING + "test_online_dpo_wiring",)),
    # the DPO family
    Mutation("dpo: beta ignored", DPO, "return dict(beta=hp.beta, ", "return dict(",
             (WIRING + "test_dpo_family_wiring",)),
    Mutation("dpo: lossType ignored", DPO, 'loss_types = [hp.loss_type or "sigmoid"]', 'loss_types = ["sigmoid"]',
             (WIRING + "test_dpo_family_wiring",)),
    Mutation("dpo: labelSmoothing ignored", DPO, ", label_smoothing=hp.label_smoothing)", ")",
             (WIRING + "test_dpo_family_wiring",)),
    Mutation("dpo: rpoAlpha weight ignored", DPO, "weights = [1.0, float(hp.rpo_alpha)]", "weights = [1.0, 1.0]",
             (WIRING + "test_dpo_family_wiring",)),
    Mutation("kto: desirable/undesirable weights ignored", KTO,
             "desirable_weight=hp.desirable_weight, undesirable_weight=hp.undesirable_weight", "",
             (WIRING + "test_dpo_family_wiring",)),
    Mutation("cpo: cpoAlpha ignored", CPO, "cpo_alpha=hp.cpo_alpha,\n", "\n",
             (WIRING + "test_dpo_family_wiring",)),
    Mutation("simpo: gamma ignored", SIMPO, "simpo_gamma=hp.simpo_gamma, ", "",
             (WIRING + "test_dpo_family_wiring",)),
    # ReFT (its RL stage at learning rate ~0, or with the reward ignored, fails
    # test_reft_rl_stage_adds_a_held_out_margin_over_the_warm_up: see docs/algorithms.md, reft)
    Mutation("reft: warm-up trains on the golden answer, not the reasoning completion", REFT,
             'answer = row.get("completion") or row.get("answer")', 'answer = row.get("answer")',
             (REFT_PIECES + "test_warm_up_trains_on_the_reference_completion_not_the_golden_answer",)),
    Mutation("reft: probes on training prompts although there is a held-out split", REFT,
             "held_out = ctx.eval_dataset is not None and len(ctx.eval_dataset) > 0", "held_out = False",
             (REFT_PIECES + "test_probes_use_the_held_out_split_when_there_is_one",)),
    Mutation("reft: KL reference is the base, not the warmed-up policy", REFT,
             'if ctx.spec.model.reference.kind == "base" and (path / "adapter_config.json").is_file():',
             "if False:", (REFT_TESTS + "test_reft_rl_stage_adds_a_held_out_margin_over_the_warm_up",)),
    Mutation("reft: warmupLearningRate ignored", REFT, "learning_rate=hp.warmup_learning_rate or hp.learning_rate)",
             "learning_rate=hp.learning_rate)", (REFT_TESTS + "test_warm_up_learning_rate_is_its_own",)),
    # TPO (thought warm-up, the judge sees answers only, format kept over the rounds)
    Mutation("tpo: thought warm-up skipped", TPO, "if ctx.resume_from is None and hp.warmup_epochs > 0:", "if False:",
             (THOUGHTS + "test_tpo_policy_writes_its_own_thoughts_and_the_judged_answers_improve",)),
    Mutation("tpo: the judge sees the thought", TPO, "answers = [split_thought(r)[1] for r in responses]",
             "answers = list(responses)",
             (THOUGHTS + "test_tpo_policy_writes_its_own_thoughts_and_the_judged_answers_improve",)),
    Mutation("tpo: rpoAlpha ignored in the rounds", TPO, "**loss_settings(hp), save_strategy",
             "**{**loss_settings(hp), 'loss_type': [hp.loss_type or 'sigmoid'], 'loss_weights': None}, save_strategy",
             (THOUGHTS + "test_tpo_policy_writes_its_own_thoughts_and_the_judged_answers_improve",)),
    Mutation("tpo: formatted responses no longer rank first", TPO,
             "rank = {j: (SEPARATOR in responses[j], scores[j]) for j in group}", "rank = {j: (True, scores[j]) for j in group}",
             (THOUGHTS + "test_tpo_policy_writes_its_own_thoughts_and_the_judged_answers_improve",)),
    Mutation("tpo: prompt length not checked in the trainer", TPO, "    longest = max(", "    return\n    longest = max(",
             (THOUGHTS + "test_tpo_prompt_longer_than_max_length_is_a_config_error",)),
    Mutation("tpo: maxLength vs thought prompt not validated", SPEC, "            if hp.max_length <= words:",
             "            if False:", (TPO_RLAIF_SPEC + "test_max_length_shorter_than_the_thought_prompt_is_rejected_naming_the_field",)),
    # RLAIF preference (judge pairs -> reward model -> PPO)
    Mutation("rlaif: reward-model score sign flipped", RLAIF, "return centre_per_prompt(raw, prompts), {",
             "return [-x for x in centre_per_prompt(raw, prompts)], {",
             (RLAIF_PREF + "test_rlaif_reward_model_generalises_and_ppo_raises_the_judges_score",)),
    Mutation("rlaif: reward-model scores whitened over the batch, not centred per prompt", RLAIF,
             "return centre_per_prompt(raw, prompts), {", "return centre_per_prompt(raw, ['same'] * len(raw)), {",
             (RLAIF_PREF + "test_reward_model_rewards_are_centred_per_prompt",)),
    Mutation("rlaif: one best-vs-worst pair per prompt", RLAIF,
             "kept = [(hi, lo) for hi, lo in zip(ranked[:len(ranked) // 2], reversed(ranked[len(ranked) // 2:]))",
             "kept = [(hi, lo) for hi, lo in zip(ranked[:1], ranked[-1:])",
             (RLAIF_PREF + "test_rlaif_reward_model_generalises_and_ppo_raises_the_judges_score",)),
    Mutation("rlaif: rewardModelEpochs ignored", RLAIF, "num_train_epochs=hp.reward_model_epochs,", "num_train_epochs=1,",
             (RLAIF_PREF + "test_reward_model_stage_takes_its_epochs_and_learning_rate",)),
    Mutation("rlaif: reward model built from the policy's adapter.init", RLAIF,
             "ctx.models.sequence_classifier(from_init=False)", "ctx.models.sequence_classifier()",
             (RLAIF_PREF + "test_reward_model_is_fresh_when_the_policy_starts_from_an_adapter",)),
    # divergence (a real overflow, not an injected NaN), status and the trainer's startup
    Mutation("divergence: residual-stream watch not attached", TRAINER_MAIN,
             "    models.on_trainable.append(metrics.watch)\n", "\n",
             ("tests/integration/test_divergence.py::test_sft_at_an_absurd_learning_rate_diverges_without_any_nan",)),
    Mutation("divergence: residual overflow not a divergence key", TRAINER_METRICS,
             'DIVERGENCE_KEYS = ("loss", "grad_norm", "eval_loss", RESIDUAL_KEY, ', 'DIVERGENCE_KEYS = ("loss", "grad_norm", "eval_loss", ',
             ("tests/unit/test_trainer_numerics.py::test_metrics_log_records_the_peak_and_diverges_on_overflow",)),
    Mutation("divergence: the watch drops a NaN", NUMERICS, "torch.maximum(self._peak", "torch.fmax(self._peak",
             ("tests/unit/test_trainer_numerics.py::test_watch_keeps_a_nan",)),
    Mutation("status: lastError kept after success", STATUS,
             "elif obs.phase == Phase.SUCCEEDED or (status.get", "elif (status.get",
             ("tests/unit/test_operator_status.py::test_success_after_a_retry_clears_last_error_and_keeps_the_restart_count",)),
    Mutation("trainer: startup heap not frozen before training", TRAINER_MAIN,
             "            settle_startup_heap()\n", "            pass\n",
             ("tests/unit/test_trainer_gc.py::test_own_process_starts_without_the_collector_and_trains_with_startup_frozen",)),
    # the algorithm table (issue 23) and the operator's status tasks
    Mutation("algorithm table: reft's ppo stage counted as a TRL loop (fsdp allowed)", TABLE,
             'Variant("rl_stage", "ppo", "own"', 'Variant("rl_stage", "ppo", "trl"',
             ("tests/unit/test_algorithm_table.py::test_reft_with_its_ppo_stage_is_refused_fsdp_like_ppo",)),
    Mutation("status task: not ended when its AlignmentJob is deleted", TRACK,
             "        wakeups.gone(key)\n        return\n", "        return\n",
             ("tests/unit/test_operator_deletion.py::test_the_status_task_starts_for_a_live_job_and_ends_when_it_is_deleted",)),
    # issue 22: real data formats, chat templates, no learning signal, the report's side-by-side answers
    Mutation("truncation: prompts never cut (TRL drops every row)", "trainer_image/align_trainer/truncation.py",
             "    if prompt_len <= budget:\n", "    if True:\n",
             (CHAT_REAL + "test_dpo_with_a_short_max_length_keeps_every_row_and_the_answers",
              CHAT_REAL + "test_the_issue_repro_trains_and_too_small_is_a_config_error")),
    Mutation("sft: truncation keeps the start (the answer is cut)", "trainer_image/align_trainer/algorithms/sft.py",
             "ids, labels = ids[-max_length:], labels[-max_length:]", "ids, labels = ids[:max_length], labels[:max_length]",
             (CHAT_REAL + "test_sft_truncation_keeps_the_last_answer",)),
    Mutation("generation: the template's end of turn not a stop token", "trainer_image/align_trainer/chat.py",
             " + ([turn] if turn is not None else [])", "",
             (CHAT_REAL + "test_end_of_turn_is_read_from_the_template",)),
    Mutation("models: end of turn not added to generation_config (TRL's samplers)", "trainer_image/align_trainer/models.py",
             "        self._stop_at_end_of_turn(model)\n", "\n",
             (CHAT_REAL + "test_generation_pads_left_and_stops_at_end_of_turn",)),
    Mutation("no learning signal: identical rewards never detected", "trainer_image/align_trainer/graders/health.py",
             "    return all(spread <= FLAT for spread in spreads)", "    return False",
             ("tests/unit/test_no_learning_signal.py::test_constant_rewards_warn_once_with_answers_and_references",
              "tests/integration/test_rl_no_signal.py::test_constant_reward_warns_and_a_varying_one_does_not")),
    Mutation("no learning signal: the operator records no event", "operator/align_operator/handlers/track.py",
             '        kopf.event(body, type="Warning", reason=cond.get("reason", "Warning")',
             '        0 and kopf.event(body, type="Warning", reason=cond.get("reason", "Warning")',
             ("tests/integration/test_operator_localcluster.py::test_a_trainer_warning_becomes_a_condition_and_one_event",)),
    Mutation("sharegpt: turn order not checked", "trainer_image/align_trainer/formats_llamafactory.py",
             "    if roles[role] != expect:", "    if False:",
             ("tests/unit/test_data_llamafactory.py::test_bad_row_names_file_line_item_and_field",)),
    Mutation("report: no side-by-side answers when all tie", "trainer_image/align_trainer/evaluation/report.py",
             "    lines += side_by_side(evaluation)\n", "\n",
             ("tests/unit/test_evaluation_outputs.py::test_report_shows_answers_side_by_side_when_all_tie",)),
)
