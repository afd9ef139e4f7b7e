"""Evaluation: did the alignment work? Policy vs reference, or a reward model on held-out pairs.

Pure statistics (`stats`, `policy_stats`, `reward_stats`), gates (`gates`), the report and charts (`report`,
`charts`, `outputs`) need no model; `runner` generates, scores and writes everything at the end of training.
"""
