"""Shared pieces of the online-RL tests: the synthetic task, a fake judge server, running a manifest.

The task: answer with lowercase letters. builtin://tiny's random embeddings give near-uniform logits, so the
tests sample at temperature 0.15 (logits / 0.15), which makes the reward learnable in a dozen steps.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from align_api.constants import ExitCode

from .trainer_support import manifest, read_metrics

LETTERS = "abcdefghijklmnopqrstuvwxyz"
#: python grader: fraction of the answer's characters that are lowercase letters (dense, easy to satisfy)
LETTER_GRADER = {"type": "python", "name": "letters", "source": (
    "def grade(sample, item):\n    text = sample['output_text']\n"
    f"    return sum(c in {LETTERS!r} for c in text) / max(1, len(text))\n")}
FAST = {"learningRate": 0.05, "batchSize": 32, "numGenerations": 8, "maxCompletionLength": 4, "temperature": 0.15}


def letter_score(text: str) -> float:
    return sum(c in LETTERS for c in text) / max(1, len(text))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matmuls on a shared 2-core machine run ~10x faster single-threaded (no thread oversubscription)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def letter_judge(messages: list[dict[str, str]]) -> float:
    """The default fake judge: letter_score of the text after 'Answer:' (prompt-independent)."""
    return letter_score("\n".join(m["content"] for m in messages).split("Answer:", 1)[-1].strip("\n"))


class JudgeServer:
    """An OpenAI-compatible chat-completions judge on loopback: `score(messages)` is its {"result": ...}
    (default: letter_judge). Records every message it was sent."""

    def __init__(self, score: Callable[[list[dict[str, str]]], float] = letter_judge) -> None:
        self.seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = "\n".join(m["content"] for m in body["messages"])
                server.seen.append(text)
                data = json.dumps({"choices": [{"index": 0, "message": {
                    "role": "assistant", "content": json.dumps({"result": score(body["messages"])})}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def grader(self, name: str = "judge", messages: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """A score_model grader on this server; `messages`: its input template (default: the letter judge's)."""
        return {"type": "score_model", "name": name, "model": "fake-judge", "range": [0, 1],
                "input": messages or [{"role": "system", "content": "Rate the answer from 0 to 1."},
                                      {"role": "user", "content": "Answer:\n{{sample.output_text}}"}],
                "endpoint": {"base_url": self.url, "timeout_seconds": 10}}

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture()
def judge_server() -> Iterator[JudgeServer]:
    server = JudgeServer()
    yield server
    server.close()


def train(tmp_path: Path, algorithm: str, grader: dict[str, Any], hp: dict[str, Any]) -> tuple[Path, list[dict[str, Any]]]:
    from align_trainer.main import run
    config = manifest(tmp_path, f"{algorithm}-rl", algorithm, "rft.openai.jsonl", hp=hp, grader=grader)
    output = tmp_path / "out"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALIGN_OUTPUT_DIR", str(output))
        assert run(["--config", str(config), "--metrics-port", "-1"]) == ExitCode.OK
    assert (output / "final" / "adapter_model.safetensors").is_file()
    return output, read_metrics(output)


def rise(values: list[float], k: int = 3) -> tuple[float, float]:
    """(mean of the first k, mean of the last k)."""
    return sum(values[:k]) / k, sum(values[-k:]) / k
