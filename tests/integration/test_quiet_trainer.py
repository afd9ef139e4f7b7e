"""A real training job in the local cluster makes no outbound connection: a loopback listener stands in for the
Hugging Face Hub (HF_ENDPOINT points at it) and is never contacted, although the pods start from an environment
in which TRL's telemetry ping does reach that listener (shown by the same call in a process with that
environment). Without the operator's HF_HUB_DISABLE_TELEMETRY / HF_HUB_OFFLINE the job pings it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from align_localcluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]
FAST = {"scrape_interval_seconds": 0.5, "status_interval_seconds": 1.0}


class Listener:
    """A loopback HTTP server that records every connection and answers 200."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.requests: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096).decode(errors="replace").split("\r\n", 1)[0])
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    self.requests.append("(connection)")

    def close(self) -> None:
        self.sock.close()


def loud_env(listener: Listener) -> dict[str, str]:
    """Pods inherit this process' environment (tests run offline: HF_HUB_OFFLINE=1, DO_NOT_TRACK=1) and TRL skips
    telemetry when CI is set; the job's pods start from this "loud" environment instead, so only what the operator
    renders can keep them quiet."""
    return {"HF_ENDPOINT": listener.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "0", "DO_NOT_TRACK": "0",
            "DISABLE_TELEMETRY": "0", "CI": "", "OMP_NUM_THREADS": "1"}


def run_job(tmp_path: Path, listener: Listener, settings: dict[str, Any]) -> dict[str, Any]:
    job = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "quiet"},
           "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny"},
                    "data": {"train": {"uri": f"file://{REPO}/examples/openai/sft_train.jsonl"}},
                    "hyperparameters": {"maxSteps": 2, "batchSize": 2, "maxLength": 256},
                    "resources": {"gpusPerNode": 0}}}
    with LocalCluster(tmp_path, gpus=0, env=loud_env(listener), settings={**FAST, **settings}) as sb:
        sb.apply(job)
        done = sb.wait("quiet", timeout=600)
        logs = "".join(sb.logs(p["metadata"]["name"]) for p in sb.list(kind="Pod"))
    assert done["status"]["phase"] == "Succeeded", (done["status"], logs[-3000:])
    return done


def ping_like_a_loud_pod(listener: Listener) -> None:
    """What an unconfigured pod does at trainer start (TRL's _send_telemetry), in a process with the same loud
    environment: shows the listener and that environment catch a real attempt, without a second training job."""
    code = ("from huggingface_hub.utils import send_telemetry\n"
            "from huggingface_hub.utils._telemetry import _TELEMETRY_QUEUE\n"
            "send_telemetry(topic='trl/SFTTrainer', library_name='trl')\n"
            "_TELEMETRY_QUEUE.join()\n")
    env = {**os.environ, **loud_env(listener)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def test_a_local_cluster_job_never_contacts_the_hub(tmp_path: Path) -> None:
    listener = Listener()
    try:
        run_job(tmp_path, listener, {})
        assert listener.requests == []
        ping_like_a_loud_pod(listener)
        assert any("/api/telemetry/trl/SFTTrainer" in r for r in listener.requests), listener.requests
    finally:
        listener.close()
