"""The generated knob check: for every algorithm of the table (align_api.algorithms.TABLE), every variant
(hyperparameters.variants) and every hyperparameter it accepts (hyperparameters.accepted), a non-default value
changes what reaches the trainer: the TRL config, trainer arguments and datasets (the entry point's truncation, so
each value gets its own context from build_context), our loops' generation settings, loss arguments, optimizer,
learning-rate schedule, KL controller and gradient checkpointing, or what the run samples (knob_support.py records
them). A hyperparameter added to the table without wiring fails here with no test written for it; one an algorithm
cannot use is refused by validation instead (align_api.hyperparameters.WHY_NOT says why)."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any, Callable

import pytest

from align_api.algorithms import TABLE
from align_api.constants import Algorithm as A
from align_api.hyperparameters import accepted, variants

from .knob_support import Recording, Stop, install, non_default
from .resume_support import point_data_at, small_data
from .rl_support import LETTER_GRADER, JudgeServer, judge_server, one_thread  # noqa: F401  (fixtures)
from .trainer_support import manifest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DATA = {A.SFT: "sft.openai.jsonl", A.REWARD: "preference.openai.jsonl", A.DPO: "preference.openai.jsonl",
        A.KTO: "unpaired.trl.jsonl", A.CPO: "preference.openai.jsonl", A.SIMPO: "preference.openai.jsonl",
        A.ORPO: "preference.openai.jsonl", A.RPO: "preference.openai.jsonl", A.TPO: "tpo.thoughts.jsonl"}
#: Small runs: 2 prompts x 2 completions of 2 tokens per step.
BASE_HP = {"batchSize": 4, "numGenerations": 2, "maxCompletionLength": 4, "maxSteps": 4}
#: Knobs whose effect needs hardware this check does not have, with the tests that show their wiring instead.
ELSEWHERE = {
    "vllm": "tests/unit/test_perf_gpu_config.py (TRL use_vllm/vllm_mode, CUDA only)",
    "vllm_server_url": "tests/unit/test_perf_gpu_config.py::test_vllm_server_mode_passes_the_url",
    "vllm_gpu_memory_utilization": "tests/unit/test_perf_gpu_config.py (colocate only)",
    "liger_kernel": "tests/unit/test_perf_gpu_config.py (CUDA only)",
    "precision": "tests/unit/test_trainer_models.py (choose_device: bf16/fp16 need a GPU)",
}
#: Settings a knob needs to show (epochs count only without maxSteps, which overrides them).
CONTEXT: dict[str, dict[str, Any]] = {"epochs": {"max_steps": None}}
#: Accepted but not wired (to be wired or refused by validation, not listed here for long). The check fails when one
#: of them starts to reach the trainer, so that the entry is removed. Empty: every accepted knob is wired.
KNOWN_GAPS: dict[tuple[str, str], str] = {}
#: The variant-selecting settings: a change is another variant, walked on its own.
SELECTORS = {"rl_stage", "feedback", "rounds"}


def cases() -> list[tuple[A, dict[str, Any]]]:
    return [(a, v) for a in TABLE for v in variants(a)]


def case_id(case: tuple[A, dict[str, Any]]) -> str:
    algorithm, variant = case
    return algorithm.value + "".join(f"-{k}-{v}" for k, v in variant.items())


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)


def record(build: Callable[[Any], Any], hp: Any) -> str:
    """Build the run's context with `hp` (as the entry point does: data fitted to maxLength/maxPromptLength) and run
    the algorithm until its first complete step; the recording as text."""
    from transformers import set_seed

    from align_trainer.algorithms import load
    rec = Recording()
    with pytest.MonkeyPatch.context() as mp:
        install(mp, rec)
        ctx = build(hp)
        try:
            set_seed(hp.seed)  # as the entry point does: every recording starts from the same random state
            load(ctx.spec.algorithm.value).run(ctx)
        except Stop:
            pass
        finally:
            ctx.metrics.close()
    assert rec.events, "nothing reached a trainer"
    return rec.text()


@pytest.mark.parametrize("case", cases(), ids=case_id)
def test_every_accepted_hyperparameter_changes_what_reaches_the_trainer(tmp_path: Path, case: tuple[A, dict[str, Any]],
                                                                         judge_server: JudgeServer) -> None:
    from align_trainer.main import build_context, data_kind, load_algorithm, load_job
    algorithm, variant = case
    known = {camel(k) for k in accepted(algorithm, variant)}
    hp = {**{k: v for k, v in BASE_HP.items() if k in known}, **{camel(k): v for k, v in variant.items() if v is not None}}
    if algorithm == A.TPO:
        hp.update(warmupEpochs=1, maxLength=512)
    grader = judge_server.grader() if algorithm in (A.RLAIF, A.TPO) else LETTER_GRADER
    spec: dict[str, Any] = {"grader": grader} if TABLE[algorithm].online or variant.get("rounds") or algorithm == A.RPO \
        else {}
    config = manifest(tmp_path, f"knobs-{algorithm.value}", algorithm.value, DATA.get(algorithm, "rft.openai.jsonl"),
                      hp=hp, **spec)
    point_data_at(config, small_data(tmp_path, DATA.get(algorithm, "rft.openai.jsonl"), 8))
    previous = signal.getsignal(signal.SIGTERM)
    default = load_job(config).spec.hyperparameters

    def build(hp: Any) -> Any:
        job = load_job(config)
        object.__setattr__(job.spec, "hyperparameters", hp)
        for leftover in ("rounds", "tpo", "checkpoints", "reft-warmup"):  # a saved round would be reused, not sampled
            shutil.rmtree(tmp_path / "out" / leftover, ignore_errors=True)
        return build_context(job, manifest=config, output=tmp_path / "out", metrics_port=None,
                             data_kind=data_kind(load_algorithm(algorithm.value), job.spec))

    try:
        baseline = record(build, default)
        assert record(build, default) == baseline, "the recording is not deterministic"
        unwired, wired_now = [], []
        for name in sorted(accepted(algorithm, variant) - set(ELSEWHERE) - SELECTORS):
            start = default.model_copy(update=CONTEXT.get(name, {}))
            before = baseline if name not in CONTEXT else record(build, start)
            value = non_default(name, algorithm, getattr(start, name))
            same = record(build, start.model_copy(update={name: value})) == before
            gap = KNOWN_GAPS.get((case_id(case), name))
            if same and gap is None:
                unwired.append(f"{name}={value!r}")
            elif not same and gap is not None:
                wired_now.append(name)
        assert not unwired, f"{case_id(case)}: these hyperparameters change nothing that reaches the trainer: {unwired}"
        assert not wired_now, f"{case_id(case)}: wired now, remove them from KNOWN_GAPS: {wired_now}"
    finally:
        signal.signal(signal.SIGTERM, previous)
