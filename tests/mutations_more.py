"""The catalogue's second part (tests/mutations.py appends it): resume and the modules the first part did not
list (rpo, reward gaps, preference rounds, SFT tokenisation, distributed, admission, node agent, evaluation
statistics, grader health, the Job's podFailurePolicy). Same format and checks."""

from __future__ import annotations

from tests.mutations import Mutation

RPO = "trainer_image/align_trainer/algorithms/rpo.py"
GAPS = "trainer_image/align_trainer/reward_gaps.py"
ROUNDS = "trainer_image/align_trainer/preference_rounds.py"
SFT = "trainer_image/align_trainer/algorithms/sft.py"
DISTRIBUTED = "trainer_image/align_trainer/distributed.py"
ONLINE = "trainer_image/align_trainer/online.py"
PPO = "trainer_image/align_trainer/algorithms/ppo.py"
RUNSTATE = "trainer_image/align_trainer/runstate.py"
CHECKPOINTS = "trainer_image/align_trainer/checkpoints.py"
TRAINER_MAIN = "trainer_image/align_trainer/main.py"
ADMISSION = "operator/align_operator/handlers/admission.py"
NODE_AGENT = "localcluster/align_localcluster/nodeagent.py"
STATS = "trainer_image/align_trainer/evaluation/stats.py"
HEALTH = "trainer_image/align_trainer/graders/health.py"
REWARDS = "trainer_image/align_trainer/graders/rewards.py"
JOB = "operator/align_operator/renderers/job.py"
TRUNCATION = "trainer_image/align_trainer/truncation.py"
RLAIF = "trainer_image/align_trainer/algorithms/rlaif.py"
SPEC = "api/align_api/spec.py"
KTO = "trainer_image/align_trainer/algorithms/kto.py"
GRPO = "trainer_image/align_trainer/algorithms/grpo.py"
SIMPO = "trainer_image/align_trainer/algorithms/simpo.py"
ORPO = "trainer_image/align_trainer/algorithms/orpo.py"
REWARD = "trainer_image/align_trainer/algorithms/reward.py"
PROMOTE_TRAINER = "trainer_image/align_trainer/promote.py"
PROMOTION = "operator/align_operator/status/promotion.py"
MILESTONES = "operator/align_operator/status/milestones.py"
UPSTREAM = "operator/align_operator/upstream.py"
USAGE = "operator/align_operator/status/usage.py"
RECONCILE = "operator/align_operator/handlers/reconcile.py"
TRACK = "operator/align_operator/handlers/track.py"
EXPOSITION = "operator/align_operator/status/exposition.py"
INFERENCE = "trainer_image/align_trainer/inference.py"
RM_GRADER = "trainer_image/align_trainer/graders/reward_model.py"
RM_MAX_LENGTH = "tests/unit/test_reward_model_max_length.py::"
WARNINGS = "operator/align_operator/status/warnings.py"
COMPUTE = "operator/align_operator/status/compute.py"
TERMINATION = "operator/align_operator/status/termination.py"
TRAINER_TERMINATION = "trainer_image/align_trainer/termination.py"
GGUF = "trainer_image/align_trainer/gguf_models.py"
STORAGE = "trainer_image/align_trainer/storage.py"

RPO_UNIT = "tests/unit/test_rpo.py::"
RESUME = "tests/integration/test_resume_complete.py::"
LOSSES = "tests/unit/test_trainer_losses.py::"
MULTIRANK_UNIT = "tests/unit/test_multirank_config.py::"
ADMISSION_UNIT = "tests/unit/test_admission.py::"
NODE_AGENT_UNIT = "tests/unit/test_node_agent_pure.py::"
STATS_UNIT = "tests/unit/test_evaluation_stats.py::"
FAILFAST = "tests/unit/test_failfast.py::"
RENDERERS = "tests/unit/test_operator_renderers.py::"
KNOBS = "tests/integration/test_knob_wiring.py::test_every_accepted_hyperparameter_changes_what_reaches_the_trainer"
BUDGET = "tests/unit/test_generation_budget.py::"
DIRECTIONS = "tests/unit/test_loss_knob_directions.py::"
PROMOTE_UNIT = "tests/unit/test_promote_pieces.py::"
PROMOTE_GATES = "tests/integration/test_promote_gates.py::"
PROMOTION_UNIT = "tests/unit/test_promotion_plan.py::"
BUDGET_UNIT = "tests/unit/test_usage_budget.py::"
RESTART_UNIT = "tests/unit/test_reconcile_restart.py::"
LIFECYCLE_EMULATED = "tests/integration/test_lifecycle_localcluster.py::"
SCRAPE = "tests/unit/test_track_scrape.py::"
ENDED = "tests/unit/test_warnings_at_the_end.py::"
SUCCESS_MESSAGE = "tests/unit/test_trainer_success_message.py::"

MORE: tuple[Mutation, ...] = (
    # resume: every restore of runstate.py, online.resume_state, ppo and the rounds
    Mutation("resume: optimizer state not restored", PPO, '        optimizer.load_state_dict(saved["optimizer"])\n', "",
             (RESUME + "test_ppo_resumes_its_whole_state",)),
    Mutation("resume: value head not restored", PPO, '        value_head.load_state_dict(saved["value_head"])\n', "",
             (RESUME + "test_ppo_resumes_its_whole_state",)),
    Mutation("resume: KL coefficient not restored", PPO,
             '        kl_ctl.beta = float(saved.get("kl_beta", kl_ctl.beta))\n', "",
             (RESUME + "test_ppo_resumes_its_whole_state",)),
    Mutation("resume: adapter weights not restored", ONLINE,
             "        set_peft_model_state_dict(peft_model, load_file(str(weights)))", "        pass",
             (RESUME + "test_ppo_resumes_its_whole_state",)),
    Mutation("resume: prompt schedule restarts at the first batch", ONLINE, "        if produced >= start_step:",
             "        if True:", (RESUME + "test_ppo_resumes_its_whole_state",)),
    Mutation("resume: RNG streams not restored", RUNSTATE,
             "        set_rng_state(streams[distributed.rank()])\n        return True", "        return True",
             (RESUME + "test_ppo_resumes_its_whole_state",)),
    Mutation("resume: grader-health window not restored", RUNSTATE, "    restore_health(ctx, saved)\n", "",
             (RESUME + "test_ppo_resumes_its_whole_state",)),
    Mutation("resume: HF checkpoints lose the grader-health window", CHECKPOINTS,
             "            runstate.restore_hf_run_state(ctx, resume)\n", "",
             (RESUME + "test_grpo_resumes_through_our_checkpoints_with_the_grader_health_window",)),
    Mutation("resume: rounds' history not restored", ONLINE,
             '    return [dict(h) for h in saved.get("history", [])]', "    return []",
             (RESUME + "test_rounds_resume_with_their_history",)),
    Mutation("resume: a repeated round's grader-health window not restored", ROUNDS,
             "        runstate.set_health_state(ctx, data.get(runstate.HEALTH_KEY))", "        pass",
             (RESUME + "test_rounds_resume_with_their_history",)),
    Mutation("resume: metrics.jsonl keeps the steps logged after the last checkpoint", TRAINER_MAIN,
             "        for record in trim_metrics(paths.metrics_file, checkpoints.step_of(resume) or 0 if resume else -1):",
             "        for record in []:",
             (RESUME + "test_ppo_resumes_its_whole_state",)),
    # rpo and its reward gaps
    Mutation("rpo: reward-gap sign flipped in the loss", RPO, "    b = eta * reward_gap.to(a.dtype)",
             "    b = -eta * reward_gap.to(a.dtype)",
             (RPO_UNIT + "test_each_loss_matches_an_independent_computation",
              RPO_UNIT + "test_a_larger_reward_gap_pulls_the_implicit_gap_further")),
    Mutation("rpo: eta ignored", RPO, "    b = eta * reward_gap.to(a.dtype)", "    b = reward_gap.to(a.dtype)",
             (RPO_UNIT + "test_each_loss_matches_an_independent_computation",)),
    Mutation("rpo: backward KL distance computed as the forward one", RPO,
             "        return log_pb.exp() * (log_pb - log_pa) + log_qb.exp() * (log_qb - log_qa)",
             "        return log_pa.exp() * (log_pa - log_pb) + log_qa.exp() * (log_qa - log_qb)",
             (RPO_UNIT + "test_each_loss_matches_an_independent_computation",)),
    Mutation("reward gaps: column gap sign flipped", GAPS, "gaps.append(values[0] - values[1])",
             "gaps.append(values[1] - values[0])", (RPO_UNIT + "test_gaps_from_columns_and_bad_values",)),
    Mutation("reward gaps: graded gap sign flipped", GAPS,
             "return [results[i].reward - results[n + i].reward for i in range(n)]",
             "return [results[n + i].reward - results[i].reward for i in range(n)]",
             (RPO_UNIT + "test_graded_gaps_are_computed_once_and_cached",)),
    # preference rounds
    Mutation("rounds: roundReference previous never moves the reference", ROUNDS,
             'if ctx.hp.round_reference == "previous" and round_no > 1:', "if False:",
             (RPO_UNIT + "test_round_reference_moves_only_when_asked",)),
    Mutation("rounds: the worst answer is not the rejected one", ROUNDS,
             "        lo = min(scored, key=lambda j: scores[j])", "        lo = scored[0]",
             (RPO_UNIT + "test_best_vs_worst_pairs_with_their_gap",)),
    Mutation("rounds: a repeated round samples and grades again", ROUNDS, "    if saved.is_file():", "    if False:",
             (RPO_UNIT + "test_a_repeated_round_reuses_its_samples",)),
    # SFT tokenisation
    Mutation("sft: completion-only labels train the prompt too", SFT, "    if not completion_only:", "    if True:",
             (LOSSES + "test_sft_labels_cover_weighted_assistant_turns_only",)),
    Mutation("sft: per-message weight 0 ignored", SFT,
             'if message["role"] != "assistant" or not message.get("weight", 1):', 'if message["role"] != "assistant":',
             (LOSSES + "test_sft_labels_cover_weighted_assistant_turns_only",)),
    # distributed
    Mutation("distributed: every rank gets every row", DISTRIBUTED, "    return list(items[index::count])",
             "    return list(items)", (MULTIRANK_UNIT + "test_shard_deals_out_and_seeds_differ_per_rank",)),
    Mutation("distributed: every rank samples with the same seed", DISTRIBUTED,
             "    return seed + 1_000_003 * (rank() if index is None else index) + 7_919 * start_step",
             "    return seed + 7_919 * start_step", (MULTIRANK_UNIT + "test_shard_deals_out_and_seeds_differ_per_rank",)),
    Mutation("distributed: own-loop gradients not averaged over ranks (no DDP)", DISTRIBUTED,
             "    if not _initialized():\n        return module\n    from torch.nn.parallel import DistributedDataParallel\n"
             "    device", "    if True:\n        return module\n    from torch.nn.parallel import DistributedDataParallel\n"
             "    device", ("tests/integration/test_multirank.py::test_ppo_sigterm_to_one_rank_checkpoints_all_and_both_resume",)),
    # the admission webhook
    Mutation("admission: a spec-changing update is not checked", ADMISSION,
             'if operation == "UPDATE" and old is not None and new is not None and old.get("spec") == new.get("spec"):',
             'if operation == "UPDATE":', (ADMISSION_UNIT + "test_a_spec_changing_update_is_checked",)),
    Mutation("admission: denial without the 422 code", ADMISSION, "invalid_message(exc), code=422)",
             "invalid_message(exc))", (ADMISSION_UNIT + "test_an_invalid_object_is_denied_with_the_field_path_and_code_422",)),
    # the node agent (moved to align_localcluster with the emulated cluster)
    Mutation("node agent: a pod that wants more GPUs than the node has fits", NODE_AGENT,
             "    if gpus is not None and wanted > gpus:", "    if False:",
             (NODE_AGENT_UNIT + "test_a_pod_fits_unless_it_wants_more_gpus_or_other_labels",)),
    Mutation("node agent: pods already placed are bound again", NODE_AGENT,
             'return not (pod.get("spec") or {}).get("nodeName") and not', "return not",
             (NODE_AGENT_UNIT + "test_only_unplaced_pending_pods_are_bound",)),
    # evaluation statistics
    Mutation("evaluation: a failed (NaN) grading counts in win/tie/loss", STATS, "    ok = ~np.isnan(diff)",
             "    ok = np.ones(diff.shape, dtype=bool)", (STATS_UNIT + "test_win_tie_loss_counts_and_rates",)),
    Mutation("evaluation: ties count as losses in the win rate", STATS,
             "return (self.wins + 0.5 * self.ties) / self.n if self.n else math.nan",
             "return self.wins / self.n if self.n else math.nan", (STATS_UNIT + "test_all_ties_is_half_not_zero",)),
    # grader health
    Mutation("grader health: the window never slides", HEALTH, "        while len(self.batches) > self.window:",
             "        while False:", (FAILFAST + "test_grader_health_judges_the_last_window_only",)),
    Mutation("grader health: unparseable answers count as grader failures", HEALTH,
             "if k not in ANSWER_FLAGS and not k.endswith(", "if not k.endswith(",
             (FAILFAST + "test_unparseable_answers_are_the_policys_zero_not_a_broken_grader",)),
    Mutation("grader health: training reward function not watched", REWARDS,
             "    grader.health = GraderHealth.from_spec(ctx.spec.run_policy, warn=", "    grader.health = None and GraderHealth.from_spec(ctx.spec.run_policy, warn=",
             (FAILFAST + "test_training_reward_function_fails_on_an_unhealthy_grader",)),
    # the trainer Job's podFailurePolicy
    Mutation("job: permanent exit codes do not fail the Job", JOB, '{"action": "FailJob", "onExitCodes"',
             '{"action": "Count", "onExitCodes"',
             (RENDERERS + "test_pod_failure_policy_fails_fast_on_permanent_codes_and_ignores_disruptions",)),
    Mutation("job: disruptions count against the backoff limit", JOB, '{"action": "Ignore", "onPodConditions"',
             '{"action": "Count", "onPodConditions"',
             (RENDERERS + "test_pod_failure_policy_fails_fast_on_permanent_codes_and_ignores_disruptions",)),
    # the knob check's wiring (issue 24): maxLength/maxPromptLength beside generated completions, PPO's gradient
    # checkpointing, the refusals and the loss knobs' directions
    Mutation("knobs: ppo gradientCheckpointing not enabled", PPO, "        enable_gradient_checkpointing(model)\n",
             "        pass\n", (KNOBS + "[ppo]",)),
    Mutation("knobs: generated prompts not cut to the budget", TRUNCATION,
             "rows = [fit_prompt(tokenizer, dict(row), budget, report) for row in dataset]",
             "rows = [dict(row) for row in dataset]",
             (BUDGET + "test_prompt_only_rows_are_cut_from_the_left_to_the_budget", KNOBS + "[grpo]")),
    Mutation("knobs: the prompt budget ignores maxLength", TRUNCATION,
             "    budget = hp.max_length - hp.max_completion_length\n", "    budget = 512 - hp.max_completion_length\n",
             (BUDGET + "test_prompt_budget_leaves_room_for_the_completion", KNOBS + "[grpo]")),
    Mutation("knobs: prompt-only datasets not fitted before TRL sees them", TRAINER_MAIN,
             '    generated = data_kind == DataKind.PROMPT_ONLY and spec.algorithm != "tpo"',
             "    generated = False", (KNOBS + "[rloo]",)),
    Mutation("knobs: refusals lose their reason", SPEC,
             'why = f": {WHY_NOT[name, algo]}" if (name, algo) in WHY_NOT else ""', 'why = ""',
             (BUDGET + "test_knobs_an_algorithm_cannot_use_are_refused_with_the_reason",)),
    Mutation("knobs: maxLength not checked against maxCompletionLength", SPEC,
             "if generates and hp.max_length - hp.max_completion_length < 4:", "if False:",
             (BUDGET + "test_knobs_an_algorithm_cannot_use_are_refused_with_the_reason",)),
    Mutation("knobs: labelSmoothing accepted where TRL ignores it", SPEC,
             "if smoothed and hp.label_smoothing and (hp.loss_type or \"sigmoid\") not in smoothed:", "if False:",
             (DIRECTIONS + "test_dpo_label_smoothing_is_refused_where_trl_ignores_it",)),
    Mutation("directions: kto desirable weight ignored", KTO, "desirable_weight=hp.desirable_weight, ",
             "desirable_weight=1.0, ", (DIRECTIONS + "test_kto_weights_scale_their_examples_loss",)),
    Mutation("directions: simpo gamma sign flipped", SIMPO, "simpo_gamma=hp.simpo_gamma,",
             "simpo_gamma=-hp.simpo_gamma,", (DIRECTIONS + "test_simpo_gamma_is_a_margin_to_beat",)),
    Mutation("directions: orpo lambda ignored", ORPO, "    return dict(beta=hp.beta)", "    return dict(beta=0.1)",
             (DIRECTIONS + "test_orpo_lambda_weighs_the_odds_ratio_term",)),
    Mutation("directions: reward centering ignored", REWARD,
             "return dict(center_rewards_coefficient=hp.center_rewards_coefficient)",
             "return dict(center_rewards_coefficient=None)",
             (DIRECTIONS + "test_reward_centering_penalises_off_centre_rewards",)),
    Mutation("directions: rpo eta ignored", RPO, "return dict(eta=float(hp.eta), ", "return dict(eta=1.0, ",
             (DIRECTIONS + "test_rpo_eta_scales_the_gap_the_implicit_gap_settles_at",)),
    Mutation("directions: kto beta ignored", KTO, "    return dict(beta=hp.beta, ", "    return dict(beta=0.1, ",
             (DIRECTIONS + "test_kto_beta_sharpens_the_value_function",)),
    Mutation("directions: grpo klCoef sign flipped", GRPO, "beta=hp.kl_coef, ", "beta=-hp.kl_coef, ",
             (DIRECTIONS + "test_grpo_kl_coef_weighs_the_kl_penalty",)),
    Mutation("directions: grpo clipRange fixed", GRPO, "epsilon=hp.clip_range,", "epsilon=0.2,",
             (DIRECTIONS + "test_grpo_clip_range_bounds_how_far_a_ratio_counts",)),
    # promote (spec.promote): retention, the trainer's lookup, the operator's plan, events, upstreams, admission
    Mutation("promote: retention deletes the promoted checkpoint", CHECKPOINTS,
             "        if step_of(path) not in spared:", "        if True:",
             (PROMOTE_UNIT + "test_rotation_spares_the_step_the_spec_promotes_and_the_steps_in_promoted_json",)),
    Mutation("promote: retention ignores promoted.json (a later save deletes a promoted step)", CHECKPOINTS,
             "    spared = set(protect) | promoted_steps(directory.parent)", "    spared = set(protect)",
             (PROMOTE_UNIT + "test_rotation_spares_the_step_the_spec_promotes_and_the_steps_in_promoted_json",)),
    Mutation("promote: the adapter is renamed into place before the gates judge it (not atomic)", PROMOTE_TRAINER,
             "        outcome = evaluate_before_publish(staged, model)  # EvaluationGateFailed: final/ stays as it was",
             "        checkpoints.commit_dir(staging, paths.final_dir)\n"
             "        outcome = evaluate_before_publish(dataclasses.replace(staged, paths=ctx.paths), model)\n"
             "        staging = checkpoints.staging_dir(paths.output_dir)\n"
             "        __import__(\"shutil\").copytree(paths.final_dir, staging)",
             (PROMOTE_GATES + "test_promote_reruns_the_gates_and_a_failed_gate_publishes_nothing",)),
    Mutation("promote: the model card does not name the promoted checkpoint", PROMOTE_TRAINER,
             "                                                  promoted_from=source), encoding=",
             "                                                  promoted_from=None), encoding=",
             (PROMOTE_GATES + "test_promote_reruns_the_gates_and_a_failed_gate_publishes_nothing",)),
    Mutation("promote: a step that is not kept is published anyway", PROMOTE_TRAINER, "    if step not in kept:",
             "    if False:", (PROMOTE_UNIT + "test_promoting_a_step_that_is_not_kept_names_the_field_and_the_kept_steps",)),
    Mutation("promote: the promote Job starts before training ends", PROMOTION, "    if phase not in ENDED:",
             "    if False:", (PROMOTION_UNIT + "test_waits_for_training_to_end_then_makes_one_job_then_publishes_its_record",)),
    Mutation("promote: a step the ended job does not keep still gets a promote Job", PROMOTION,
             "        if kept and refused:", "        if False:",
             (PROMOTION_UNIT + "test_a_step_not_kept_is_refused_with_the_kept_steps_and_no_job",)),
    Mutation("promote: a settled refusal is retried forever", PROMOTION,
             "                and cond.get(\"observedGeneration\") == generation)", "                and False)",
             (PROMOTION_UNIT + "test_a_step_not_kept_is_refused_with_the_kept_steps_and_no_job",)),
    Mutation("promote: the published adapter is not what job://name reads", PROMOTION,
             '            new["artifacts"] = {**(status.get("artifacts") or {}), "adapter": step_plan.promotion["adapter"]}',
             "            pass",
             (PROMOTION_UNIT + "test_waits_for_training_to_end_then_makes_one_job_then_publishes_its_record",)),
    Mutation("promote: the promote Job and pod are indexed as the trainer's", TRACK,
             "    if labels.get(COMPONENT_LABEL) == PROMOTE_COMPONENT:", "    if False:",
             (PROMOTION_UNIT + "test_promote_jobs_and_pods_are_indexed_apart_from_the_trainers",)),
    Mutation("promote: no Promoted event", MILESTONES, "    if promoted is not None and [",
             "    if False and promoted is not None and [", (PROMOTION_UNIT + "test_promoted_events_follow_the_condition",)),
    Mutation("promote: job://name of a promoting upstream reads the last step's adapter", UPSTREAM,
             '        elif obj is not None and promotion.asked(obj.get("spec") or {}) is not None:', "        elif False:",
             (PROMOTION_UNIT + "test_job_name_of_a_promoting_upstream_waits_for_the_promoted_adapter_then_reads_it",)),
    Mutation("promote: the webhook admits a step the ended job does not keep", ADMISSION,
             "        if refused:\n            raise kopf.AdmissionError(refused, code=422)", "        pass",
             (ADMISSION_UNIT + "test_promoting_a_step_an_ended_job_does_not_keep_is_denied_naming_the_kept_steps",)),
    # namespace default budgets
    Mutation("budgets: a job's looser runPolicy limit overrides its namespace's", USAGE,
             "            if own is not None and (default is None or own <= default):", "            if own is not None:",
             (BUDGET_UNIT + "test_namespace_defaults_apply_and_the_stricter_limit_wins_with_its_source",)),
    Mutation("budgets: a bad namespace default is used", USAGE, "        if not value > 0 or value == float(\"inf\"):",
             "        if False:", (BUDGET_UNIT + "test_a_bad_namespace_default_is_named_and_ignored",)),
    Mutation("budgets: a bad namespace default is not warned about", "operator/align_operator/handlers/lifecycle.py",
             "        if problems and configmap is not None and self._warned.get(namespace) != version:",
             "        if False:",
             (BUDGET_UNIT + "test_namespace_defaults_are_read_once_per_interval_and_a_bad_value_is_warned_once",)),
    # one JobCreated per job, also across an operator restart
    Mutation("restart: the creation handler re-creates a Job a stop deleted (a second JobCreated)", RECONCILE,
             '    return not status.get("jobName") and want(spec', "    return want(spec",
             (RESTART_UNIT + "test_a_restart_while_a_resume_is_pending_leaves_the_job_to_the_lifecycle",)),
    Mutation("events: the New -> Pending phase change posts JobCreated again", TRACK,
             "        if reason != Reason.JOB_CREATED:", "        if True:",
             (LIFECYCLE_EMULATED + "test_an_operator_killed_mid_pause_and_mid_resume_loses_and_duplicates_nothing",)),
    # the operator's scrape: one parse of /metrics for every reader
    Mutation("scrape: the parse handed on as a one-shot generator", EXPOSITION,
             "    return list(text_string_to_metric_families(text))", "    return text_string_to_metric_families(text)",
             (SCRAPE + "test_one_parse_feeds_progress_checkpoints_and_warnings",)),
    Mutation("scrape: a cleared warning read as set", WARNINGS, "and sample.value == 1 and", "and",
             (SCRAPE + "test_one_parse_feeds_progress_checkpoints_and_warnings",)),
    # warnings a run reports at its end (success termination message), for a run that ended before the next scrape
    Mutation("ended warnings: the success termination message's warnings are not applied", COMPUTE,
             "            if obs.success.warnings:", "            if 0 and obs.success.warnings:",
             (ENDED + "test_a_warning_no_scrape_saw_becomes_the_condition_and_one_event",
              "tests/integration/test_operator_localcluster.py::"
              "test_a_warning_no_scrape_saw_still_becomes_the_condition_and_one_event")),
    Mutation("ended warnings: a warning a scrape applied is applied again (its cut message: a second event)", WARNINGS,
             "        if (old.get(\"status\"), old.get(\"reason\")) != (status, reason):", "        if True:",
             (ENDED + "test_a_warning_a_scrape_applied_is_not_applied_again",)),
    Mutation("ended warnings: the trainer leaves them out of its success message", TRAINER_MAIN,
             '        doc["warnings"] = warning_records(warnings)', "        pass",
             (SUCCESS_MESSAGE + "test_the_warnings_ride_in_the_message_and_reach_the_operator",)),
    Mutation("ended warnings: the run's warnings never handed to the success message", TRAINER_MAIN,
             "                                                  ctx.metrics.reported_warnings()))",
             "                                                  ()))",
             ("tests/integration/test_rl_no_signal.py::test_constant_reward_warns_and_a_varying_one_does_not",)),
    Mutation("ended warnings: the numbers kept before the warning's message is shortened", TRAINER_TERMINATION,
             '    _drop("checkpointIndex"), _shorten(WARNING_SHORT), _drop("finalMetrics"), _drop("evaluation"),',
             '    _drop("checkpointIndex"), _drop("finalMetrics"), _drop("evaluation"), _shorten(WARNING_SHORT),',
             (SUCCESS_MESSAGE + "test_a_long_message_is_cut_to_valid_json_keeping_the_artifacts_and_the_warning",)),
    Mutation("ended warnings: the message not cut to fit (the kubelet cuts it to broken JSON)", TRAINER_TERMINATION,
             "        if size(doc) <= limit:", "        if True:",
             (SUCCESS_MESSAGE + "test_a_long_message_is_cut_to_valid_json_keeping_the_artifacts_and_the_warning",)),
    Mutation("failure message: the trainer's own message keeps only its tail (NoLearningSignal loses its why)",
             TERMINATION, "            result.message = clip(text.strip())",
             "            result.message = text.strip()[-MAX_MESSAGE:]",
             (ENDED + "test_the_failure_path_keeps_what_went_wrong_and_the_last_words",
              "tests/integration/test_rl_no_signal.py::test_fail_on_no_learning_signal")),
    # the GGUF conversion cache shared by concurrent jobs (a PVC)
    Mutation("cache folders: one fixed staging folder for every builder (GGUF conversions, builtin models)", STORAGE,
             '    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"\n    staging.mkdir(parents=True)\n',
             '    staging = target.parent / f".{target.name}.tmp"\n    staging.mkdir(parents=True)\n',
             ("tests/unit/test_gguf_models.py::test_two_jobs_converting_one_file_at_once_share_the_winners_copy",
              "tests/unit/test_trainer_models.py::test_two_builders_of_one_builtin_at_once_share_the_winners_copy")),
    Mutation("cache folders: a failed rename returns whatever is in the way", STORAGE,
             "            if finished(target):", "            if True:",
             ("tests/unit/test_gguf_models.py::test_a_leftover_folder_in_the_way_is_named_not_returned",
              "tests/unit/test_trainer_models.py::test_a_builder_whose_rename_fails_for_itself_names_the_folder",
              "tests/unit/test_trainer_models.py::test_a_leftover_builtin_folder_in_the_way_is_named_not_returned")),
    Mutation("gguf cache: any folder in the way taken as a finished conversion", GGUF,
             "lambda folder: (folder / SOURCE_FILE).is_file()", "lambda folder: True",
             ("tests/unit/test_gguf_models.py::test_a_leftover_folder_in_the_way_is_named_not_returned",)),
    Mutation("builtin cache: any folder in the way taken as a finished build", "trainer_image/align_trainer/builtin.py",
             '    return (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()',
             "    return folder.is_dir()",
             ("tests/unit/test_trainer_models.py::test_a_leftover_builtin_folder_in_the_way_is_named_not_returned",)),
    # the reward_model grader's max_length: cut from the left (the answer's end kept); reward rows fitted, not dropped
    Mutation("reward_model grader: max_length ignored", RM_GRADER, "texts, max_length=self.spec.max_length)", "texts)",
             (RM_MAX_LENGTH + "test_the_grader_scores_the_last_max_length_tokens",)),
    Mutation("reward_model scores: long texts cut from the right (the answer's end lost)", INFERENCE,
             "else ids[len(ids) - max_length:]", "else ids[:max_length]",
             (RM_MAX_LENGTH + "test_the_grader_scores_the_last_max_length_tokens",)),
    Mutation("reward rows: answers cut from their end (the shared message cut keeps the start)", TRUNCATION,
             "    first[\"content\"] = _cut_left(tokenizer, first[\"content\"], tokens)",
             "    first[\"content\"] = first[\"content\"][:-tokens]",
             (RM_MAX_LENGTH + "test_reward_rows_keep_the_end_of_answers_that_do_not_fit",)),
    Mutation("reward rows: the trainer does not fit reward answers (TRL drops every long pair)", TRAINER_MAIN,
             '    keep_end = spec.algorithm == "reward"', "    keep_end = False",
             ("tests/integration/test_trainer_algorithms.py::test_reward_pairs_longer_than_max_length_are_cut_not_dropped",)),
    Mutation("reward rows: answers not fitted (TRL drops the pair)", TRUNCATION,
             "            rows = [fit_answers(tokenizer, row, hp.max_length, report) for row in rows]",
             "            pass",
             (RM_MAX_LENGTH + "test_reward_rows_keep_the_end_of_answers_that_do_not_fit",)),
    Mutation("truncation: a long chat's emptied old turns kept (their headers fill maxLength: ConfigError)", TRUNCATION,
             "            turn = _emptied_turn(messages)", "            turn = None",
             ("tests/integration/test_chat_templates_real.py::"
              "test_a_long_chat_drops_its_oldest_emptied_turns_and_keeps_the_last_question",)),
    Mutation("truncation: a long chat's old turns dropped one message at a time (roles stop alternating)", TRUNCATION,
             "                del messages[turn:turn + 2]", "                del messages[turn:turn + 1]",
             ("tests/integration/test_chat_templates_real.py::"
              "test_a_long_chat_drops_its_oldest_emptied_turns_and_keeps_the_last_question",)),
    # a Job that exists is Created, also over an older Created=False (Forbidden) the status pass still held
    Mutation("created: a stale Created=False (Forbidden) kept while the Job exists", TRACK,
             '    if cond is not None and cond.get("status") == "True":', "    if cond is not None:",
             ("tests/unit/test_track_created.py::test_a_stale_forbidden_created_becomes_true_and_its_error_goes",)),
    Mutation("created: the Forbidden lastError kept once the Job exists", TRACK,
             '        out.pop("lastError")', '        out.get("lastError")',
             ("tests/unit/test_track_created.py::test_a_stale_forbidden_created_becomes_true_and_its_error_goes",)),
)
