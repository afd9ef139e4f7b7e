"""Model judges over HTTP (a fake OpenAI-compatible server on loopback) and `alignctl grade`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import TypeAdapter
from typer.testing import CliRunner

from align_api.graders import Grader as GraderSpec
from align_trainer import graders

SPEC = TypeAdapter(GraderSpec)


class FakeJudge(BaseHTTPRequestHandler):
    """Answers 0.9/'correct' when the judged answer contains 'Paris'; 500 for 'CRASH'; a refusal for 'REFUSE'."""

    requests: list[dict[str, Any]] = []
    auth: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        type(self).auth.append(self.headers.get("Authorization"))
        full = body["messages"][-1]["content"]
        text = full.split("Answer:")[-1]
        if "CRASH" in text:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if "REFUSE" in text:
            message["refusal"] = "I can't grade that."
        elif "labels" in full:
            message["content"] = "correct" if "Paris" in text else "incorrect"
        else:
            message["content"] = json.dumps({"result": 0.9 if "Paris" in text else 0.1})
        data = json.dumps({"choices": [{"index": 0, "message": message}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def judge_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def score_spec(url: str, **extra: Any) -> Any:
    return SPEC.validate_python({
        "type": "score_model", "name": "judge", "model": "judge-model", "range": [0, 1], "pass_threshold": 0.5,
        "input": [{"role": "system", "content": "Score 0-1."},
                  {"role": "user", "content": "Reference: {{item.answer}}\nAnswer: {{sample.output_text}}"}],
        "sampling_params": {"temperature": 0, "seed": 7, "max_completions_tokens": 16},
        "endpoint": {"base_url": url, **extra}})


def test_score_model_over_http(judge_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_JUDGE_API_KEY", "sk-test")
    FakeJudge.requests.clear()
    FakeJudge.auth.clear()
    grader = graders.build(score_spec(judge_url, api_key={"name": "judge", "key": "token"}))
    results = grader.grade_batch([{"answer": "Paris"}] * 4, ["Paris", "Lyon", "CRASH", "REFUSE"])
    assert [r.reward for r in results[:2]] == [0.9, 0.1]
    assert results[0].passed is True and results[1].passed is False
    assert results[2].errors["model_grader_server_error"] and results[2].reward == 0.0
    assert results[3].errors["model_grader_refusal_error"]
    sent = FakeJudge.requests[0]
    assert sent["model"] == "judge-model" and sent["temperature"] == 0 and sent["max_tokens"] == 16
    assert {r["messages"][1]["content"] for r in FakeJudge.requests} >= {"Reference: Paris\nAnswer: Paris",
                                                                       "Reference: Paris\nAnswer: Lyon"}
    assert set(FakeJudge.auth) == {"Bearer sk-test"}


def test_missing_key_is_reported_when_building(judge_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGN_JUDGE_API_KEY", raising=False)
    with pytest.raises(graders.GraderUnavailable, match="ALIGN_JUDGE_API_KEY"):
        graders.build(score_spec(judge_url, api_key={"name": "judge", "key": "token"}))


def test_label_model_over_http(judge_url: str) -> None:
    spec = SPEC.validate_python({
        "type": "label_model", "name": "labeler", "model": "judge-model", "labels": ["correct", "incorrect"],
        "passing_labels": ["correct"], "endpoint": {"base_url": judge_url},
        "input": [{"role": "user", "content": "labels: correct/incorrect. Answer: {{sample.output_text}}"}]})
    results = graders.build(spec).grade_batch([{}, {}], ["Paris", "Rome"])
    assert [(r.reward, r.label) for r in results] == [(1.0, "correct"), (0.0, "incorrect")]


def test_multi_with_a_judge_and_a_rule(judge_url: str) -> None:
    spec = SPEC.validate_python({
        "type": "multi", "name": "m", "calculate_output": "0.5 * judge + 0.5 * exact",
        "graders": {"judge": score_spec(judge_url).model_dump(exclude_none=True),
                    "exact": {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                              "reference": "{{item.answer}}", "operation": "eq"}}})
    result = graders.build(spec).grade({"answer": "Paris"}, "Paris")
    assert result.reward == pytest.approx(0.95) and result.sub_rewards == {"judge": 0.9, "exact": 1.0}


@pytest.mark.slow
def test_local_judge_model_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # builtin://tiny is random: it rarely answers a number, so parse errors are expected and recorded.
    spec = SPEC.validate_python({"type": "score_model", "name": "local", "model": "builtin://tiny",
                                 "input": [{"role": "user", "content": "{{sample.output_text}}"}],
                                 "sampling_params": {"max_completions_tokens": 4}})
    results = graders.build(spec).grade_batch([{}, {}], ["a", "b"])
    assert all((r.failed and r.errors.get("model_grader_parse_error")) or 0 <= r.reward <= 1 for r in results)


def test_alignctl_grade(tmp_path: Path) -> None:
    from align_operator.cli import _register, app
    _register()
    grader = tmp_path / "grader.yaml"
    grader.write_text(
        "type: multi\nname: m\ncalculate_output: 'exact + 0.5 * py'\ngraders:\n"
        "  exact: {type: string_check, name: exact, input: '{{sample.output_text}}', reference: '{{item.answer}}', operation: eq}\n"
        "  py:\n    type: python\n    name: py\n    source: |\n      def grade(sample, item):\n"
        "          return 1 / len(sample['output_text'])\n")
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c) for c in [
        {"item": {"answer": "4"}, "model_sample": "4"},
        {"item": {"answer": "4"}, "model_sample": "five"},
        {"item": {"answer": "4"}, "model_sample": ""}]) + "\n")
    result = CliRunner().invoke(app, ["grade", "--grader", str(grader), "--input", str(cases)])
    assert result.exit_code == 1 and "error: 1 of 3 case(s) errored" in result.stderr  # issue 16
    result = CliRunner().invoke(app, ["grade", "--grader", str(grader), "--input", str(cases), "--allow-errors"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows[2]["metadata"]["errors"] == rows[2]["errors"]  # only the flags that are set
    assert [r["reward"] for r in rows[:2]] == [1.5, 0.125]
    assert rows[0]["sub_rewards"] == {"exact": 1.0, "py": 1.0} and rows[0]["errors"] == {}
    assert rows[2]["reward"] == 0.0 and rows[2]["errors"]["python_grader_runtime_error"]  # ZeroDivisionError
    assert "ZeroDivisionError" in rows[2]["errors"]["python_grader_runtime_error_details"]


def test_alignctl_grade_reports_bad_input(tmp_path: Path) -> None:
    from align_operator.cli import _register, app
    _register()
    grader = tmp_path / "g.json"
    grader.write_text(json.dumps({"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
                                  "reference": "x", "operation": "contains"}))
    cases = tmp_path / "c.jsonl"
    cases.write_text('{"item": {}}\n')
    result = CliRunner().invoke(app, ["grade", "--grader", str(grader), "--input", str(cases)])
    assert result.exit_code == 1 and "operation" in result.output
