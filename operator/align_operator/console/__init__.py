"""The web console (`alignctl console`): a read-only view of AlignmentJobs over the user's kubeconfig.

views.py (pure: rows, pages, timeline, spec diff, evaluation), series.py (pure: curves from metrics.jsonl or the
trainer's progress lines), sources.py (reads: the cluster and published artifacts), server.py (aiohttp),
static/ (the pages; static/vendor/ holds uPlot, vendored at build time by scripts/vendor_console_assets.sh).
"""
