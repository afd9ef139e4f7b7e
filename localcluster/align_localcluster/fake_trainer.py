"""A stand-in trainer for operator tests and demos: `python -m align_localcluster.fake_trainer --config FILE`.

It honours the trainer's contract without training anything: serves `align_trainer_*` gauges on the
configured metrics port, counts steps, writes a termination message and an adapter directory, exits with
a chosen code. Behaviour comes from the manifest's labels (copied into the trainer config):

    fake.align.dev/steps: "5"          optimizer steps to count
    fake.align.dev/step-ms: "100"      milliseconds per step
    fake.align.dev/exit-code: "0"      exit code at the end (12 = Diverged, 11 = DataError, ...)
    fake.align.dev/message: "json"     "json" (default) or "text": termination message format
    fake.align.dev/warning: "Reason"   from step 1 on, serve align_trainer_warning{reason="Reason"} 1 (as the
                                       trainer does for NoLearningSignal) with WARNING_MESSAGE; a successful run's
                                       termination message carries it too (`warnings`, as the trainer's)
    fake.align.dev/warning-at: "end"   the warning came at the last step: never served, so no scrape can see it
                                       (a run that ends before the operator's next scrape); only the termination
                                       message carries it

With `spec.checkpoints.volume` it keeps state as the trainer does, in $ALIGN_OUTPUT_DIR (the job's directory on
that volume): one metrics.jsonl line per step, and on SIGTERM (suspend, cancel, preemption) `fake-checkpoint.json`
with the step reached, from which the next pod continues; exit 1 after a SIGTERM, as the trainer's Interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from align_api import yamlio

MESSAGES = {
    10: ("ConfigError", "spec.model.quantization: 4-bit needs CUDA"),
    11: ("DataError", "data/train.jsonl:3: field 'chosen' is missing"),
    12: ("Diverged", "loss became NaN at step 3 (grad norm inf)"),
    13: ("EvaluationGateFailed", "gate 'winRate >= 0.55' failed: winRate = 0.41"),
    14: ("UpstreamFailed", "job://sft: adapter not found"),
    1: ("TrainerError", "RuntimeError: CUDA error: an illegal memory access was encountered"),
}


WARNING_MESSAGE = "no learning signal: grader 'exact' gave every prompt's samples the same reward; 'A: bowling' vs 'A' -> 0"


class _Gauges:
    def __init__(self) -> None:
        self.values = {"step": 0.0, "total_steps": 0.0, "epoch": 0.0, "loss": float("nan"), "learning_rate": 0.0}
        self.warning: str | None = None  #: a warning reason, served once set
        self.lock = threading.Lock()

    def render(self, job: str) -> bytes:
        with self.lock:
            lines = []
            for name, value in self.values.items():
                lines.append(f"# TYPE align_trainer_{name} gauge")
                lines.append(f'align_trainer_{name}{{job="{job}"}} {value}')
            if self.warning:
                message = WARNING_MESSAGE.replace("\\", "\\\\").replace('"', '\\"')
                lines += ["# TYPE align_trainer_warning gauge",
                          f'align_trainer_warning{{job="{job}",reason="{self.warning}",message="{message}"}} 1.0']
        return ("\n".join(lines) + "\n").encode()


def _serve(gauges: _Gauges, port: int, job: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            body = gauges.render(job)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _terminate(text: str) -> None:
    path = os.environ.get("ALIGN_TERMINATION_LOG", "/dev/termination-log")
    try:
        Path(path).write_text(text)
    except OSError:
        print(text, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--output")
    args = parser.parse_args(argv)
    doc = yamlio.load(Path(args.config).read_text())
    labels = (doc.get("metadata") or {}).get("labels") or {}
    name = (doc.get("metadata") or {}).get("name", "job")
    steps = int(labels.get("fake.align.dev/steps", 5))
    step_seconds = float(labels.get("fake.align.dev/step-ms", 100)) / 1000
    exit_code = int(labels.get("fake.align.dev/exit-code", 0))
    output = Path(args.output or os.environ.get("TMPDIR", "/tmp")) / "fake-output"
    gauges = _Gauges()
    server = _serve(gauges, int(doc["spec"].get("metrics", {}).get("port", 9400)), name)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    state = Path(os.environ["ALIGN_OUTPUT_DIR"]) if (doc["spec"].get("checkpoints") or {}).get("volume") \
        and os.environ.get("ALIGN_OUTPUT_DIR") else None
    first = 1
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)
        checkpoint = state / "fake-checkpoint.json"
        if checkpoint.is_file():
            first = int(json.loads(checkpoint.read_text())["step"]) + 1
            print(f"resuming from step {first - 1}", flush=True)
    print(f"fake trainer {name}: {steps} steps, exit {exit_code}, resolved {os.environ.get('ALIGN_RESOLVED_URIS', '{}')}",
          flush=True)
    secrets = [k for k in ("HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ALIGN_JUDGE_API_KEY") if os.environ.get(k)]
    print(f"secrets set: {', '.join(secrets) or 'none'}", flush=True)  # names only, never values
    with gauges.lock:
        gauges.values["total_steps"] = steps
    for step in range(first, steps + 1):
        if stop.wait(step_seconds):
            if state is not None:
                (state / "fake-checkpoint.json").write_text(json.dumps({"step": step - 1}))
            print(f"SIGTERM: checkpoint at step {step - 1}", flush=True)
            server.shutdown()
            return 1
        with gauges.lock:
            gauges.values.update(step=step, epoch=step / steps, loss=1.0 / step, learning_rate=1e-4)
            if labels.get("fake.align.dev/warning-at") != "end":
                gauges.warning = labels.get("fake.align.dev/warning")
        if state is not None:
            with (state / "metrics.jsonl").open("a") as fh:
                fh.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\n")
        print(f"step {step}/{steps} loss {1.0 / step:.3f}", flush=True)
    server.shutdown()
    if state is not None:  # as the trainer's last checkpoint: a Job run again after the end trains nothing twice
        (state / "fake-checkpoint.json").write_text(json.dumps({"step": steps}))
    if exit_code:
        reason, message = MESSAGES.get(exit_code, ("TrainerError", f"exit {exit_code}"))
        text = json.dumps({"reason": reason, "message": message}) \
            if labels.get("fake.align.dev/message", "json") == "json" else f"{reason}: {message}"
        _terminate(text)
        print(message, file=sys.stderr, flush=True)
        return exit_code
    final = output / "final"
    final.mkdir(parents=True, exist_ok=True)
    (final / "adapter_config.json").write_text(json.dumps({"fake": True, "job": name}))
    (output / "resolved.json").write_text(os.environ.get("ALIGN_RESOLVED_URIS", "{}"))
    warning = labels.get("fake.align.dev/warning")
    _terminate(json.dumps({"adapter": f"file://{final}", "steps": steps, "totalSteps": steps,
                           "finalMetrics": {"loss": 1.0 / steps},
                           **({"warnings": [{"reason": warning, "message": WARNING_MESSAGE}]} if warning else {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
