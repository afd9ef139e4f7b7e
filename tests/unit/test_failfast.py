"""Fail fast, never silently (issue 16): preflight problems name the field, file and line; unhealthy graders
stop training with GraderFailing; an evaluation that scored nothing is not "passed"; a working directory
resumes only its own run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from align_api import ManifestError, load_file, load_text
from align_api.constants import ExitCode, Reason
from align_operator.status.compute import next_status
from align_operator.status.observe import observe
from align_trainer import identity, preflight
from align_trainer.checkpoints import finished_checkpoint
from align_trainer.errors import GraderFailing
from align_trainer.graders.core import GradeResult
from align_trainer.graders.health import GraderHealth

from .test_operator_status import NOW, job as k8s_job, pod

RFT_ROWS = [{"messages": [{"role": "user", "content": f"Name {i}?"}], "reference_answer": f"n{i}"} for i in range(3)]


def write_manifest(tmp_path: Path, *, grader: dict[str, Any] | None = None, output: str | None = None,
                   train: str = "train.jsonl", hp: dict[str, Any] | None = None, name: str = "ff") -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RFT_ROWS))
    spec: dict[str, Any] = {
        "algorithm": "grpo", "model": {"base": "builtin://tiny"},
        "data": {"train": {"uri": train, "format": "openai-rft"}},
        "grader": grader or {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                             "reference": "{{item.reference_answer}}", "operation": "eq"},
        "hyperparameters": {"maxSteps": 2, "batchSize": 4, "numGenerations": 2, **(hp or {})},
        "resources": {"gpusPerNode": 0}, "evaluation": {"enabled": False}}
    if output:
        spec["output"] = {"uri": output}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
                                    "metadata": {"name": name}, "spec": spec}, sort_keys=False))
    return path


def problems(path: Path) -> list[str]:
    job = load_file(path)[0]
    lines = preflight.manifest_lines(path.read_text())
    return [p.render(path, lines) for p in preflight.check(job, base_dir=path.parent, output_dir=None, in_pod=False)]


def test_preflight_passes_a_good_job(tmp_path: Path) -> None:
    assert problems(write_manifest(tmp_path, output=str(tmp_path / "out"))) == []
    assert not (tmp_path / "out").exists()  # the write check leaves nothing behind


def test_grader_template_on_a_missing_item_field_names_field_file_line_and_a_suggestion(tmp_path: Path) -> None:
    grader = {"type": "multi", "calculate_output": "a", "graders": {"a": {
        "type": "string_check", "name": "a", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
        "operation": "eq"}}}
    path = write_manifest(tmp_path, grader=grader)
    found = problems(path)
    assert len(found) == 1, found
    text = found[0]
    line = path.read_text().splitlines().index(next(l for l in path.read_text().splitlines() if "item.answer" in l)) + 1
    assert text.startswith(f"{path}:{line}: spec.grader.graders.a.reference: ")
    assert "train.jsonl:1" in text and "did you mean {{item.reference_answer}}" in text


def test_unwritable_output_uri_is_named(tmp_path: Path) -> None:
    found = problems(write_manifest(tmp_path, output="file:///proc/align-preflight/out"))
    assert len(found) == 1 and "spec.output.uri: /proc/align-preflight/out is not writable" in found[0]


def test_missing_relative_data_file_is_a_path_not_a_hub_dataset(tmp_path: Path) -> None:
    found = problems(write_manifest(tmp_path, train="data/missing.jsonl"))
    assert len(found) == 1 and "spec.data.train.uri" in found[0] and "does not exist" in found[0]
    assert str(tmp_path) in found[0]  # says where relative paths resolve


def test_rows_that_do_not_parse_in_the_declared_format_are_named(tmp_path: Path) -> None:
    path = write_manifest(tmp_path)
    (tmp_path / "train.jsonl").write_text(json.dumps({"prompt": "x", "chosen": "a", "rejected": "b"}) + "\n")
    found = problems(path)
    assert found and "spec.data.train.format" in found[0] and "train.jsonl:1" in found[0]


def test_batch_that_is_not_whole_groups_is_rejected_by_validate(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, hp={"batchSize": 6, "numGenerations": 4})
    with pytest.raises(ManifestError) as err:
        load_text(path.read_text(), str(path))
    assert "hyperparameters.batchSize" in str(err.value) and "numGenerations (4)" in str(err.value)


def test_validate_preflight_cli_exits_1_with_error_lines(tmp_path: Path) -> None:
    from align_operator.cli import _register, app
    _register()
    path = write_manifest(tmp_path, output="file:///proc/align-preflight/out")
    result = CliRunner().invoke(app, ["validate", "--preflight", str(path)])
    assert result.exit_code == 1
    assert "error: " in result.output and "spec.output.uri" in result.output
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0  # the plain check cannot know


# --------------------------------------------------------------------------- graders
def failed(message: str = "boom") -> GradeResult:
    return GradeResult(0.0, errors={"python_grader_runtime_error": True}, details={"error": message})


def test_grader_health_stops_above_the_rate_and_quotes_the_first_errors() -> None:
    health = GraderHealth(max_error_rate=0.5, window=2)
    health.observe("g", [GradeResult(1.0), GradeResult(1.0), failed("first")])       # 1/3
    with pytest.raises(GraderFailing) as err:
        health.observe("g", [failed("second"), failed("second"), GradeResult(1.0)])  # 3/6 -> not above 0.5
        health.observe("g", [failed("third"), failed("third"), failed("third")])     # window: 5/6
    assert err.value.exit_code == ExitCode.GRADER_FAILING and err.value.reason == Reason.GRADER_FAILING
    assert "first errors: python_grader_runtime_error: first | python_grader_runtime_error: second" in str(err.value)
    GraderHealth(max_error_rate=1.0, window=1).observe("g", [failed()])  # 1 never stops


def test_training_reward_function_fails_on_an_unhealthy_grader() -> None:
    from align_api.graders import PythonGrader
    from align_api.runtime import RunPolicy
    from align_trainer.graders.rewards import grader_reward
    grader = PythonGrader(type="python", name="raises", source="def grade(sample, item):\n    raise ValueError('nope')\n")
    ctx = SimpleNamespace(spec=SimpleNamespace(grader=grader, run_policy=RunPolicy()))
    reward = grader_reward(ctx)
    try:
        with pytest.raises(GraderFailing, match="nope"):
            reward(prompts=["a", "b"], completions=["x", "y"])
    finally:
        reward.grader.close()


def test_an_evaluation_that_scored_nothing_is_not_passed() -> None:
    message = json.dumps({"steps": 2, "totalSteps": 2, "evaluation": {"lengthRatio": 1.0, "samples": 4.0},
                          "evaluationProblem": {"reason": Reason.EVALUATION_UNSCORED, "message": "scored none"}})
    obs = observe(k8s_job(("Complete", "CompletionsReached", "")),
                  [pod("Succeeded", terminated={"exitCode": 0, "message": message})], queued=False)
    status = next_status({}, obs, generation=1, now=NOW)
    evaluated = [c for c in status["conditions"] if c["type"] == "Evaluated"][0]
    assert evaluated["status"] == "False" and evaluated["reason"] == Reason.EVALUATION_UNSCORED


def test_outcome_with_every_sample_unscored_reports_nothing_scored() -> None:
    from align_trainer.evaluation.outputs import EvaluationOutcome
    assert EvaluationOutcome("policy", {"samples": 4.0}, unscored=4).scored_nothing
    assert not EvaluationOutcome("policy", {"samples": 4.0}, unscored=3).scored_nothing


# --------------------------------------------------------------------------- identity
def test_a_working_directory_resumes_only_its_own_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = load_file(write_manifest(tmp_path))[0]
    out = tmp_path / "out"
    monkeypatch.setenv(identity.ENV_JOB_UID, "uid-1")
    assert identity.claim(out, job) is False                        # fresh: records itself
    (out / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    assert identity.claim(out, job) is True                         # a restart of the same object
    monkeypatch.setenv(identity.ENV_JOB_UID, "uid-2")               # same name, re-created: another run
    assert identity.claim(out, job) is False
    assert not (out / "checkpoints").exists()
    assert list((out / identity.SUPERSEDED_DIR).glob("*/checkpoints/checkpoint-1"))
    monkeypatch.delenv(identity.ENV_JOB_UID)
    changed = job.model_copy(deep=True)
    changed.spec.hyperparameters.learning_rate *= 2
    assert identity.claim(out, job) is True and identity.claim(out, changed) is False


def test_a_finished_checkpoint_is_not_trained_again(tmp_path: Path) -> None:
    for step, planned, done in ((2, 2, True), (1, 2, False), (3, 2, True)):
        path = tmp_path / f"checkpoint-{step}-{planned}"
        path.mkdir()
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "max_steps": planned}))
        assert finished_checkpoint(path) is done


def test_submit_of_a_file_runs_the_preflight_before_contacting_the_cluster(tmp_path: Path) -> None:
    from align_operator.cli import _register, app
    _register()
    path = write_manifest(tmp_path, train="data/missing.jsonl")
    result = CliRunner().invoke(app, ["submit", str(path), "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "error: " in result.output and "spec.data.train.uri" in result.output
    assert "nothing was submitted" in result.output


def test_unparseable_answers_are_the_policys_zero_not_a_broken_grader() -> None:
    """OpenAI RFT scores an answer that is not the JSON a grader reads as 0; the policy learns from it."""
    health = GraderHealth(max_error_rate=0.5, window=1)
    health.observe("g", [GradeResult(0.0, errors={"sample_parse_error": True})] * 4)
    with pytest.raises(GraderFailing):
        health.observe("g", [GradeResult(0.0, errors={"invalid_variable_error": True})] * 4)


def test_final_metrics_use_the_gauge_spelling_of_status_metrics() -> None:
    """status.metrics merges scraped gauges (rewards_accuracies) with the final numbers: one spelling per key."""
    from align_trainer.main import success_message
    from align_trainer.runtime import TrainResult
    doc = json.loads(success_message(TrainResult(steps=2, total_steps=2, metrics={"rewards/accuracies": 0.5},
                                                 eval_metrics={"eval_rewards/margins": 0.1})))
    assert doc["finalMetrics"] == {"rewards_accuracies": 0.5, "eval_rewards_margins": 0.1}


def test_an_empty_assistant_turn_in_sft_data_is_an_error() -> None:
    from align_trainer.errors import DataError
    from align_trainer.formats import parse_row
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}
    with pytest.raises(DataError, match=r"train.jsonl:3: field messages\[1\].content: an assistant turn"):
        parse_row("openai-chat", row, "train.jsonl:3")
    row["messages"][1]["weight"] = 0
    row["messages"].append({"role": "assistant", "content": "hello"})
    assert parse_row("openai-chat", row, "train.jsonl:3") is not None


def test_an_unknown_field_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, hp={"learningrate": 0.001})
    with pytest.raises(ManifestError) as err:
        load_file(path)
    assert "spec.hyperparameters.learningrate: unknown field" in str(err.value)
    assert "did you mean" in str(err.value) and "learningRate" in str(err.value)


def test_plot_names_the_job_and_refuses_an_ambiguous_folder(tmp_path: Path) -> None:
    from align_operator.cli import _register, app

    from .test_plot import write_dpo_run
    _register()
    for name in ("first", "second"):
        run = write_dpo_run(tmp_path / "wd" / "pods" / f"{name}-trainer-0" / "volumes" / "work" / "output")
        (run / "status.json").write_text(json.dumps({"job": f"job-{name}", "state": "Succeeded"}))
    both = CliRunner().invoke(app, ["plot", str(tmp_path / "wd"), "--no-png"])
    assert both.exit_code == 1 and "holds 2 runs" in both.stderr
    assert "(job-first)" in both.stderr and "(job-second)" in both.stderr
    one = CliRunner().invoke(app, ["plot", str(tmp_path / "wd" / "pods" / "first-trainer-0")])
    assert one.exit_code == 0, one.output
    assert "(job-first)" in one.stdout and (tmp_path / "wd" / "pods" / "first-trainer-0" / "volumes" / "work" /
                                            "output" / "metrics.png").exists()


def test_get_and_describe_read_a_finished_local_run_without_a_cluster(tmp_path: Path) -> None:
    from align_operator.cli import _register, app
    from align_operator.cli.local_cmd import save_jobs
    _register()
    job = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
           "metadata": {"name": "done", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "x.jsonl"}}},
           "status": {"phase": "Succeeded", "lastError": None, "progress": {"step": 2, "totalSteps": 2}}}
    workdir = save_jobs(tmp_path / "wd", [job], {"done": []})
    got = CliRunner().invoke(app, ["get", str(workdir), "--server", "http://127.0.0.1:9"])
    assert got.exit_code == 0, got.output
    assert "done" in got.stdout and "Succeeded" in got.stdout
    described = CliRunner().invoke(app, ["describe", str(workdir), "--server", "http://127.0.0.1:9"])
    assert described.exit_code == 0, described.output
    assert "Succeeded" in described.stdout
    save_jobs(workdir, [{**job, "metadata": {"name": "other"}}], {})
    ambiguous = CliRunner().invoke(app, ["describe", str(workdir)])
    assert ambiguous.exit_code == 1 and "holds 2 jobs" in ambiguous.stderr


def test_a_failed_jobs_running_condition_says_why_it_stopped() -> None:
    from align_api.constants import Phase
    from align_operator.status.conditions import phase_conditions
    waiting = phase_conditions([], Phase.RUNNING, Reason.PODS_RUNNING, "1 trainer pod(s) running", 1, NOW)
    waiting = phase_conditions(waiting, Phase.PENDING, Reason.JOB_CREATED, "Waiting for trainer pods", 1, NOW)
    failed = phase_conditions(waiting, Phase.FAILED, Reason.PREFLIGHT_FAILED, "spec.output.uri: not writable", 1, NOW)
    running = [c for c in failed if c["type"] == "Running"][0]
    assert running["status"] == "False" and running["reason"] == Reason.PREFLIGHT_FAILED
    assert running["message"] == "spec.output.uri: not writable"


def test_the_pod_works_on_its_volume_and_knows_its_job_uid_also_with_an_output_uri() -> None:
    from align_api import validate_document
    from align_operator.renderers import render_job
    from align_operator.settings import Settings
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
           "metadata": {"name": "demo", "namespace": "team", "uid": "1234-abcd"},
           "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "s3://bucket/x.jsonl"}},
                    "output": {"uri": "s3://bucket/out"}}}
    rendered = render_job(validate_document(doc), "team", Settings(trainer_image="t:1"))
    main = rendered["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["ALIGN_OUTPUT_DIR"] == "/workspace/output" and "--output" not in main["args"]  # uploads to the URI
    assert env["ALIGN_JOB_UID"] == "1234-abcd"
    assert {"name": "work", "mountPath": "/workspace"} in main["volumeMounts"]


def test_the_trainer_reports_an_evaluation_that_scored_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from align_trainer.evaluation import hook
    from align_trainer.evaluation.outputs import EvaluationOutcome
    from align_trainer.main import success_message
    from align_trainer.runtime import TrainResult
    outcome = EvaluationOutcome("policy", {"lengthRatio": 1.0, "samples": 2.0}, unscored=2, report=Path("r.md"))
    monkeypatch.setattr(hook, "evaluate_before_publish", lambda ctx, model: outcome)
    result = TrainResult(steps=2, total_steps=2)
    hook.after_training(None, None, result)
    doc = json.loads(success_message(result))
    assert doc["evaluationProblem"]["reason"] == Reason.EVALUATION_UNSCORED
    assert "none of the 2 evaluation samples" in doc["evaluationProblem"]["message"]


def test_a_bad_row_alone_stays_a_data_error_in_the_pod(tmp_path: Path) -> None:
    from align_trainer.errors import DataError, PreflightFailed
    path = write_manifest(tmp_path)
    (tmp_path / "train.jsonl").write_text(json.dumps({"messages": "not a list"}) + "\n")
    job = load_file(path)[0]
    with pytest.raises(DataError) as err:
        preflight.run(job, base_dir=tmp_path, output_dir=None, kind=preflight.DataKind.PROMPT_ONLY, manifest=path)
    assert not isinstance(err.value, PreflightFailed) and str(err.value).startswith(f"{tmp_path / 'train.jsonl'}:1: ")


def test_evaluation_grades_the_same_item_fields_as_training() -> None:
    """{{item.messages}} works in training (rlaif example); evaluation used to score such a grader as unscored."""
    import math

    from align_api.graders import StringCheckGrader
    from align_trainer.evaluation.scoring import GraderScorer
    grader = StringCheckGrader(type="string_check", name="s", input="{{sample.output_text}}",
                               reference="{{item.messages[0].content}}", operation="eq")
    scorer = GraderScorer(grader)
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "answer": "x"}]
    assert [s.reward for s in scorer.score(rows, ["hi"])] == [1.0]
    assert not any(math.isnan(s.reward) for s in scorer.score(rows, ["no"]))


def test_relative_data_paths_fall_back_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In a pod the "manifest" is the mounted config: a relative data path is the pod's working directory's (the
    # local cluster runs pods where `alignctl local up --cwd` says). The manifest's directory still wins when it has it.
    from align_trainer import storage
    manifest_dir, work = tmp_path / "config", tmp_path / "work"
    (work / "data").mkdir(parents=True)
    manifest_dir.mkdir()
    (work / "data" / "x.jsonl").write_text("{}\n")
    monkeypatch.chdir(work)
    assert storage.file_path("data/x.jsonl", manifest_dir) == work / "data" / "x.jsonl"
    (manifest_dir / "data").mkdir()
    (manifest_dir / "data" / "x.jsonl").write_text("{}\n")
    assert storage.file_path("data/x.jsonl", manifest_dir) == manifest_dir / "data" / "x.jsonl"
    assert storage.file_path("data/missing.jsonl", manifest_dir) == manifest_dir / "data" / "missing.jsonl"
