"""alignctl import openai: OpenAI's documented fine-tuning requests become valid AlignmentJobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from align_api import Algorithm, load_file, validate_document
from align_operator.cli import _register, app
from align_operator.openai_import import Options, RequestError, convert

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "openai"

# The requests below reproduce OpenAI's API reference examples for POST /v1/fine_tuning/jobs ("Epochs",
# "DPO") and the reinforcement fine-tuning guide's request, with the multigrader of OpenAI's graders guide.
OPENAI_SUPERVISED = {"training_file": "file-abc123", "model": "gpt-4o-mini",
                     "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}}
OPENAI_DPO = {"training_file": "file-abc123", "validation_file": "file-abc123", "model": "gpt-4o-mini",
              "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}}
OPENAI_MULTI_GRADER = {
    "type": "multi",
    "graders": {
        "name": {"name": "name_grader", "type": "text_similarity", "input": "{{sample.output_json.name}}",
                 "reference": "{{item.name}}", "evaluation_metric": "fuzzy_match"},
        "email": {"name": "email_grader", "type": "string_check", "input": "{{sample.output_json.email}}",
                  "reference": "{{item.email}}", "operation": "eq"},
    },
    "calculate_output": "(name + email) / 2",
}
OPENAI_REINFORCEMENT = {
    "training_file": "file-train", "validation_file": "file-valid", "model": "o4-mini-2025-04-16",
    "method": {"type": "reinforcement", "reinforcement": {
        "grader": OPENAI_MULTI_GRADER,
        "response_format": {"type": "json_schema", "json_schema": {"name": "contact", "schema": {"type": "object"}}},
        "hyperparameters": {"reasoning_effort": "medium"}}},
}

_register()  # every alignctl command, as the console script loads them


def kinds(notes: list[Any]) -> dict[str, str]:
    return {n.field: n.kind for n in notes}


def test_documented_supervised_request() -> None:
    manifest, notes = convert(OPENAI_SUPERVISED)
    job = validate_document(manifest)
    assert job.spec.algorithm == "sft" and job.spec.hyperparameters.epochs == 2
    assert job.spec.data.train.uri == "file-abc123.jsonl" and job.spec.data.train.format == "openai-chat"
    assert job.spec.model.base == "Qwen/Qwen2.5-7B-Instruct"
    assert kinds(notes)["training_file"] == "approx" and kinds(notes)["model"] == "approx"
    assert any("files/file-abc123/content" in n.message for n in notes)


def test_documented_dpo_request_with_downloaded_files(tmp_path: Path) -> None:
    (tmp_path / "file-abc123.jsonl").write_text((EXAMPLES / "dpo_train.jsonl").read_text())
    manifest, notes = convert(OPENAI_DPO, Options(files_dir=tmp_path, model="builtin://tiny"))
    job = validate_document(manifest)
    assert job.spec.algorithm == "dpo" and job.spec.hyperparameters.beta == 0.1
    assert job.spec.data.train.uri == str(tmp_path / "file-abc123.jsonl")
    assert job.spec.data.eval is not None and job.spec.data.eval.format == "openai-preference"
    assert kinds(notes)["training_file"] == "mapped"


def test_documented_reinforcement_request_pastes_the_multi_grader_verbatim() -> None:
    manifest, notes = convert(OPENAI_REINFORCEMENT)
    job = validate_document(manifest)
    assert job.spec.algorithm == "grpo"
    assert manifest["spec"]["grader"] == OPENAI_MULTI_GRADER
    assert job.spec.grader is not None and job.spec.grader.type == "multi"
    assert job.spec.data.train.format == "openai-rft"
    assert kinds(notes)["method.reinforcement.hyperparameters.reasoning_effort"] == "dropped"
    assert kinds(notes)["method.reinforcement.response_format"] == "dropped"
    rloo, _ = convert(OPENAI_REINFORCEMENT, Options(rl_algorithm=Algorithm.RLOO))
    assert validate_document(rloo).spec.algorithm == "rloo"


def test_rft_hyperparameters_auto_values_and_request_fields() -> None:
    request = {
        "model": "ft:gpt-4o-mini-2024-07-18:acme::abc123", "training_file": "train.jsonl", "seed": 3,
        "suffix": "my model!", "metadata": {"team": "nlp", "bad key": "x"},
        "integrations": [{"type": "wandb", "wandb": {"project": "p"}}],
        "method": {"type": "reinforcement", "reinforcement": {
            "grader": {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                       "reference": "{{item.answer}}", "operation": "eq"},
            "hyperparameters": {"n_epochs": "auto", "learning_rate_multiplier": 0.5, "compute_multiplier": 2,
                                "eval_interval": 10, "eval_samples": 8, "batch_size": 16}}},
    }
    manifest, notes = convert(request, Options(base_dir=Path("/data")))
    job = validate_document(manifest)
    hp = job.spec.hyperparameters
    assert (hp.learning_rate, hp.num_generations, hp.eval_steps, hp.batch_size, hp.seed) == (5e-05, 8, 10, 16, 3)
    assert "epochs" not in manifest["spec"]["hyperparameters"]  # 'auto' keeps our default
    assert job.spec.evaluation is not None and job.spec.evaluation.samples == 8
    assert job.spec.data.train.uri == "/data/train.jsonl"
    assert job.spec.suffix == "my-model-" and job.name == "my-model"
    assert manifest["metadata"]["annotations"]["openai.align.dev/team"] == "nlp"
    found = kinds(notes)
    assert found["method.reinforcement.hyperparameters.n_epochs"] == "default"
    assert found["metadata.bad key"] == "dropped" and found["integrations[0]"] == "dropped"
    assert any("cannot be exported" in n.message for n in notes)


def test_eval_interval_is_dropped_for_ppo_which_has_no_in_training_evaluation() -> None:
    request = {"model": "gpt-4o-mini", "training_file": "train.jsonl", "method": {"type": "reinforcement",
               "reinforcement": {"grader": {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                                            "reference": "{{item.answer}}", "operation": "eq"},
                                 "hyperparameters": {"eval_interval": 10}}}}
    manifest, notes = convert(request, Options(base_dir=Path("/data"), rl_algorithm=Algorithm.PPO))
    assert validate_document(manifest).spec.hyperparameters.eval_steps is None
    note = next(n for n in notes if n.field == "method.reinforcement.hyperparameters.eval_interval")
    assert note.kind == "dropped" and "no in-training evaluation" in note.message


def test_legacy_top_level_hyperparameters_and_data_prefix() -> None:
    request = {"model": "gpt-3.5-turbo", "training_file": "file-xyz", "hyperparameters": {"n_epochs": 3}}
    manifest, notes = convert(request, Options(data_prefix="s3://bucket/ft/"))
    job = validate_document(manifest)
    assert job.spec.hyperparameters.epochs == 3 and job.spec.algorithm == "sft"
    assert job.spec.data.train.uri == "s3://bucket/ft/file-xyz.jsonl"


def test_not_a_request_or_unknown_method_is_an_error() -> None:
    with pytest.raises(RequestError, match="training_file"):
        convert({"model": "gpt-4o-mini"})
    with pytest.raises(RequestError, match="method.type 'distillation'"):
        convert({"model": "gpt-4o-mini", "training_file": "f.jsonl", "method": {"type": "distillation"}})
    with pytest.raises(RequestError, match="grader is required"):
        convert({"model": "o4-mini", "training_file": "f.jsonl", "method": {"type": "reinforcement"}})


@pytest.mark.parametrize("request_file, algorithm", [("supervised.json", "sft"), ("dpo.json", "dpo"),
                                                     ("reinforcement.json", "grpo")])
def test_cli_imports_the_examples_into_valid_manifests(request_file: str, algorithm: str, tmp_path: Path) -> None:
    out = tmp_path / "job.yaml"
    result = CliRunner().invoke(app, ["import", "openai", str(EXAMPLES / request_file), "-o", str(out)])
    assert result.exit_code == 0, result.output
    (job,) = load_file(out)  # what `alignctl validate` runs
    assert job.spec.algorithm == algorithm
    assert Path(job.spec.data.train.uri).is_file()
    assert "mapped" in result.stderr and "method.type" in result.stderr
    assert out.read_text().startswith("# Imported from")


def test_cli_reports_an_unsupported_grader_and_strict_dropped_fields(tmp_path: Path) -> None:
    request = dict(OPENAI_REINFORCEMENT, training_file=str(EXAMPLES / "rft_train.jsonl"))
    request["method"] = {"type": "reinforcement", "reinforcement": {"grader": {"type": "endpoint", "name": "x"}}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(request))
    result = CliRunner().invoke(app, ["import", "openai", str(bad)])
    assert result.exit_code == 1 and "unknown grader type" in result.stderr
    out = tmp_path / "strict.yaml"
    strict = CliRunner().invoke(app, ["import", "openai", str(EXAMPLES / "reinforcement.json"), "--strict", "-o", str(out)])
    assert strict.exit_code == 1 and "--strict" in strict.stderr and "nothing written" in strict.stderr
    assert strict.stdout == "" and not out.exists()  # issue 16: --strict writes nothing when a field was dropped


def test_warns_about_rows_the_trainer_refuses_and_api_judges(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
            {"messages": [{"role": "user", "content": "weather?"}], "tools": [{"type": "function"}]},
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    judge = {"type": "score_model", "name": "judge", "model": "gpt-4o-2024-08-06",
             "input": [{"role": "user", "content": "Score {{sample.output_text}}"}]}
    request = {"model": "o4-mini", "training_file": str(data),
               "method": {"type": "reinforcement", "reinforcement": {"grader": judge}}}
    manifest, notes = convert(request)
    validate_document(manifest)
    messages = " ".join(n.message for n in notes)
    assert "1 row(s) define tools" in messages and "1 row(s) contain images" in messages
    assert any(n.field == "method.reinforcement.grader.model" and "endpoint" in n.message for n in notes)


def test_batch_rounded_to_whole_groups_hosted_judge_gets_an_endpoint_and_validate_accepts(tmp_path: Path) -> None:
    """Issue 16: batch_size 4 with compute_multiplier 1.5 gave numGenerations 6 (not a divisor); a score_model
    naming a hosted model had no endpoint. Both passed the import and failed later."""
    judge = {"type": "score_model", "name": "judge", "model": "gpt-4o-2024-08-06",
             "input": [{"role": "user", "content": "Score {{sample.output_text}}"}]}
    request = {"model": "o4-mini", "training_file": str(EXAMPLES / "rft_train.jsonl"),
               "method": {"type": "reinforcement", "reinforcement": {
                   "grader": {"type": "multi", "graders": {"j": judge}, "calculate_output": "j"},
                   "hyperparameters": {"batch_size": 4, "compute_multiplier": 1.5}}}}
    path = tmp_path / "rft.json"
    path.write_text(json.dumps(request))
    out = tmp_path / "rft.yaml"
    result = CliRunner().invoke(app, ["import", "openai", str(path), "--model", "builtin://tiny", "-o", str(out)])
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(out.read_text())["spec"]
    assert spec["hyperparameters"]["numGenerations"] == 6 and spec["hyperparameters"]["batchSize"] == 6
    assert "batchSize 4 -> 6" in result.stderr
    assert spec["grader"]["graders"]["j"]["endpoint"]["base_url"] == "https://api.openai.com/v1"
    assert spec["secrets"] == {"judgeApiKey": {"name": "openai", "key": "api-key"}}
    assert CliRunner().invoke(app, ["validate", str(out)]).exit_code == 0


def test_dpo_learning_rate_multiplier_lands_in_the_dpo_range_or_is_noted() -> None:
    def rate(multiplier: float) -> tuple[float, list[str]]:
        request = {"model": "gpt-4o-mini", "training_file": "x.jsonl", "method": {"type": "dpo", "dpo": {
            "hyperparameters": {"learning_rate_multiplier": multiplier}}}}
        manifest, notes = convert(request)
        return manifest["spec"]["hyperparameters"]["learningRate"], [n.message for n in notes]
    assert rate(1)[0] == 1e-5
    high, notes = rate(10)
    assert high == 1e-4 and any("outside 5e-06-5e-05" in n for n in notes)
