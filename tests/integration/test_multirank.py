"""Two ranks for real: torchrun (through align_trainer.launch) with gloo on CPU, one algorithm of each family.

Offline TRL (dpo), online TRL (grpo), our own loop (ppo, with a SIGTERM to one rank and a resume), and a
rank killed with SIGKILL while the job runs on two "nodes". Each run is 3 steps of builtin://tiny.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from align_api.constants import ExitCode
from tests.integration.multirank_support import env, free_port, job, launch, logged_steps, rank_pids, wait_for
from tests.integration.resume_support import differences, final_adapter, metric_records
from tests.integration.trainer_support import read_metrics, series

pytestmark = pytest.mark.slow
RUN_TIMEOUT = 240


def finish(proc, timeout: float = RUN_TIMEOUT) -> int:  # type: ignore[no-untyped-def]
    try:
        return proc.wait(timeout=timeout)
    except Exception:
        proc.kill()
        raise


def test_dpo_on_two_ranks_matches_one_rank_and_writes_one_set_of_artifacts(tmp_path: Path) -> None:
    """2 ranks x batch 2 against 1 process x batch 4 (same data, same global batch): the same loss curve."""
    out = tmp_path / "out"
    code = finish(launch(job(tmp_path, "dpo2", "dpo", checkpoints={"everySteps": 2, "keep": 1}), out))
    log = out.with_suffix(".log").read_text()
    assert code == ExitCode.OK, log[-3000:]
    assert "rank 1 of 2 joined the process group (gloo" in log
    records = read_metrics(out)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3], "rank 0 alone writes metrics.jsonl"
    single = tmp_path / "single"
    done = subprocess.run([sys.executable, "-m", "align_trainer", "--config",
                           str(job(tmp_path, "dpo1", "dpo", processes=1, hp={"batchSize": 4})), "--output", str(single),
                           "--metrics-port", "-1"], env=env(), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = series(read_metrics(single), "loss"), series(records, "loss")
    assert len(one) == len(two) == 3 and max(abs(a - b) for a, b in zip(one, two)) < 1e-4, (one, two)
    assert two[-1] < two[0] - 0.05, "and it trained"
    assert json.loads((out / "status.json").read_text())["state"] == "Succeeded"
    assert (out / "final" / "adapter_model.safetensors").is_file()
    [checkpoint] = (out / "checkpoints").glob("checkpoint-*")  # keep: 1
    # one checkpoint holds both ranks' RNG states: the ranks saved into one staging directory
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert log.count("== dpo2: dpo finished") == 1


def test_grpo_on_two_ranks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = finish(launch(job(tmp_path, "grpo2", "grpo"), out))
    log = out.with_suffix(".log").read_text()
    assert code == ExitCode.OK, log[-3000:]
    assert [r["step"] for r in read_metrics(out) if "reward" in r] == [1, 2, 3]
    assert (out / "final" / "adapter_model.safetensors").is_file()


def test_ppo_sigterm_to_one_rank_checkpoints_all_and_both_resume(tmp_path: Path) -> None:
    """Own loop: prompts sharded, DDP over the adapter and the value head (the run ends with a check that the
    ranks' parameters are equal). SIGTERM to rank 1 alone stops both at the same step with one checkpoint
    and exit code 1 (retry); the restart resumes both ranks from it and ends as the uninterrupted run."""
    config = job(tmp_path, "ppo2", "ppo", hp={"maxSteps": 8}, checkpoints={"everySteps": 1000, "keep": 1})
    out = tmp_path / "out"
    proc = launch(config, out)
    wait_for(lambda: logged_steps(out) >= 1 or proc.poll() is not None, RUN_TIMEOUT, "the first step")
    ranks = rank_pids(proc.pid)
    assert set(ranks) == {0, 1}, ranks
    os.kill(ranks[1], signal.SIGTERM)
    code = finish(proc)
    log = out.with_suffix(".log").read_text()
    assert code == ExitCode.TRANSIENT, log[-3000:]
    checkpoints = sorted((out / "checkpoints").iterdir())
    assert len(checkpoints) == 1 and checkpoints[0].name.startswith("checkpoint-"), checkpoints
    step = json.loads((checkpoints[0] / "align_state.json").read_text())["global_step"]
    assert 1 <= step < 8

    code = finish(launch(config, out, log=tmp_path / "resume.log"))
    log = (tmp_path / "resume.log").read_text()
    assert code == ExitCode.OK, log[-3000:]
    assert log.count(f"resuming from checkpoint-{step}") == 2, "both ranks resume the same checkpoint"
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == list(range(1, 9)), steps
    assert (out / "final" / "adapter_model.safetensors").is_file()

    # ... and ends as the uninterrupted two-rank run: each rank's RNG, the optimizer, the value head and the KL
    # coefficient came back (runstate.py; test_resume_complete.py compares each piece on one rank)
    whole = tmp_path / "whole"
    code = finish(launch(config, whole, log=tmp_path / "whole.log"))
    assert code == ExitCode.OK, (tmp_path / "whole.log").read_text()[-3000:]
    problems = differences(final_adapter(whole), final_adapter(out), "final adapter") + \
        differences(metric_records(whole), metric_records(out), "metrics.jsonl")
    assert not problems, problems[:10]


def test_kill_9_of_a_rank_on_another_node_fails_the_job_within_the_timeout(tmp_path: Path) -> None:
    """Two nodes (two launchers, one rank each). SIGKILL to rank 1: its node fails at once, and rank 0, whose
    peer vanished mid-collective, fails within collectiveTimeoutSeconds instead of hanging; both exit 1
    (transient: the Job retries and resumes)."""
    config = job(tmp_path, "dpo-kill", "dpo", processes=1, hp={"maxSteps": 400},
                 resources={"nodes": 2, "collectiveTimeoutSeconds": 30})
    port = free_port()
    out = tmp_path / "out"
    nodes = [launch(config, out, nproc=1, nnodes=2, node_rank=i, port=port, log=tmp_path / f"node{i}.log")
             for i in (0, 1)]
    wait_for(lambda: logged_steps(out) >= 1 or any(n.poll() is not None for n in nodes), RUN_TIMEOUT,
             "the first step")
    victim = rank_pids(nodes[1].pid)
    assert 1 in victim, victim
    os.kill(victim[1], signal.SIGKILL)
    killed = time.monotonic()
    codes = [finish(n, timeout=30 + 60) for n in nodes]
    assert time.monotonic() - killed < 30 + 60
    assert codes == [ExitCode.TRANSIENT, ExitCode.TRANSIENT], [(tmp_path / f"node{i}.log").read_text()[-2000:]
                                                               for i in (0, 1)]
    assert logged_steps(out) < 400
