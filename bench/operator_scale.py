"""Operator scale: AlignmentJobs turned into Jobs, the operator as its own process, no pods run.

Two API servers, same operator, same measurements:

    python bench/operator_scale.py [--jobs 500] [--clients 8]          # the local cluster's emulated API server
    python bench/operator_scale.py --real [--rate 20 --duration 30] [--jobs 500]
                                   # the real core server (scripts/realk8s.sh: kube-apiserver 1.20, etcd,
                                   # kube-controller-manager, whose Job controller makes a pod per Job)

Phases, run one after the other against one operator: `sustained` creates AlignmentJobs at a fixed rate
(--rate per second for --duration seconds; --rate 0 skips it), then `burst` creates --jobs as fast as --clients
parallel clients can. Jobs from the first phase stay live during the second, so with the defaults the operator
ends with 1100 live jobs (1 Job and 1 pod each on the real server).

Per phase: Jobs/s (phase start to its last Job), create-to-Job latency p50/p95 (a watch on Jobs timestamps each
Job's ADDED event), the operator's peak RSS, and the CPU seconds every process of the control plane used (where
the throughput ceiling is: all of them share this machine's cores). Each phase prints `operator_scale: ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
CR_PATH = "/apis/align.dev/v1alpha1/namespaces/default/alignmentjobs"
#: Production settings of the operator (not the local cluster's quick polls), no metrics port.
SETTINGS = {"scrape_interval_seconds": 15.0, "status_interval_seconds": 10.0, "upstream_poll_seconds": 10.0}


def manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": name},
            "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"},
                     "data": {"train": {"uri": "data/pairs.jsonl"}}, "resources": {"gpusPerNode": 1}}}


@dataclass
class Target:
    """An API server with the operator running against it."""

    url: str
    client: Callable[[], httpx.Client]
    operator_pid: int
    #: Every process of the control plane by role (operator, apiserver, etcd, ...), for the CPU breakdown.
    processes: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- targets
def emulator_target(stack: ExitStack) -> Target:
    from align_localcluster import LocalCluster
    sb = stack.enter_context(LocalCluster(operator="process", node_agent=False, settings={**SETTINGS, "metrics_port": 0}))
    assert sb.operator_pid is not None
    return Target(url=sb.url, client=lambda: httpx.Client(base_url=sb.url, timeout=30), operator_pid=sb.operator_pid,
                  processes={"operator": sb.operator_pid, "emulated apiserver (+bench)": os.getpid()})


def _realk8s(command: str, env: dict[str, str]) -> None:
    proc = subprocess.run(["bash", str(REPO / "scripts" / "realk8s.sh"), command], env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"scripts/realk8s.sh {command} failed:\n{proc.stderr[-3000:]}")


def real_target(stack: ExitStack, port_base: int) -> Target:
    state = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    stack.callback(shutil.rmtree, state, ignore_errors=True)
    env = {**os.environ, "REALK8S_STATE": str(state), "REALK8S_PORT_BASE": str(port_base)}
    _realk8s("up", env)
    stack.callback(_realk8s, "down", env)
    config = yaml.safe_load((state / "kubeconfig").read_text())
    url = config["clusters"][0]["cluster"]["server"]
    token = config["users"][0]["user"]["token"]

    def client() -> httpx.Client:
        return httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(state / "pki" / "ca.crt")),
                            timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
    with client() as c:
        crd = yaml.safe_load((REPO / "crds" / "align.dev_alignmentjobs.yaml").read_text())
        c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).raise_for_status()
        for _ in range(300):
            if c.get("/apis/align.dev/v1alpha1/alignmentjobs").status_code == 200:
                break
            time.sleep(0.1)
    from align_operator.settings import Settings
    operator_env = {**os.environ, **Settings.from_env({}, **SETTINGS, metrics_port=0).to_env()}
    log = open(state / "operator.log", "ab")
    operator = subprocess.Popen([sys.executable, "-m", "align_operator", "--kubeconfig", str(state / "kubeconfig"),
                                 "--all-namespaces"], env=operator_env, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def stop_operator() -> None:
        operator.terminate()
        try:
            operator.wait(timeout=30)
        except subprocess.TimeoutExpired:
            operator.kill()
    stack.callback(stop_operator)
    pids = {name: int((state / f"{name}.pid").read_text()) for name in ("apiserver", "etcd", "kcm")}
    names = {"apiserver": "kube-apiserver", "etcd": "etcd", "kcm": "kube-controller-manager"}
    return Target(url=url, client=client, operator_pid=operator.pid,
                  processes={"operator": operator.pid, **{names[k]: v for k, v in pids.items()},
                             "bench clients": os.getpid()})


# ---------------------------------------------------------------------------------------------- measuring
def watch_jobs(target: Target, seen: dict[str, float], stop: threading.Event, reconnects: list[int]) -> None:
    """Record when each Job first appears (ADDED on a watch, timed here). A watch the server ends (or a read
    error under load) resumes from the last resourceVersion seen, so no Job is missed."""
    version = ""
    while not stop.is_set():
        try:
            with target.client() as client:
                client.timeout = httpx.Timeout(30, read=None)
                params = {"watch": "true", **({"resourceVersion": version} if version else {})}
                with client.stream("GET", "/apis/batch/v1/jobs", params=params) as response:
                    for line in response.iter_lines():
                        if stop.is_set():
                            return
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        meta = (event.get("object") or {}).get("metadata", {})
                        version = meta.get("resourceVersion", version)
                        name = meta.get("name", "")
                        if event.get("type") == "ADDED" and name not in seen:
                            seen[name] = time.monotonic()
        except httpx.HTTPError as exc:
            print(f"Job watch: {exc!r}; resuming", file=sys.stderr, flush=True)
        reconnects[0] += 1


class RssSampler:
    """Peak RSS of one process since the last reset (sampled every 50 ms)."""

    def __init__(self, pid: int, stop: threading.Event):
        self.process, self.peak = psutil.Process(pid), 0
        threading.Thread(target=self._run, args=(stop,), daemon=True).start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    def reset(self) -> int:
        current = self.process.memory_info().rss
        self.peak = current
        return current


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    out = {}
    for role, pid in processes.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[role] = times.user + times.system
        except psutil.Error:
            out[role] = 0.0
    return out


@dataclass
class PhaseResult:
    name: str
    n: int
    seconds_to_create: float
    jobs_per_s: float
    p50_ms: float
    p95_ms: float
    peak_rss_mb: float
    cpu: dict[str, float]

    def line(self, mode: str, live: int) -> str:
        return (f"operator_scale: mode={mode} phase={self.name} n={self.n} jobs_per_s={self.jobs_per_s:.1f} "
                f"p50_ms={self.p50_ms:.0f} p95_ms={self.p95_ms:.0f} peak_rss_mb={self.peak_rss_mb:.0f} "
                f"live_jobs={live}")


def schedule(rate: float, duration: float, jobs: int) -> Iterator[float]:
    """Offsets (seconds from the phase start) at which to send each create: evenly spaced, or all at once."""
    if rate > 0:
        for i in range(int(rate * duration)):
            yield i / rate
    else:
        for _ in range(jobs):
            yield 0.0


def run_phase(target: Target, name: str, prefix: str, offsets: list[float], clients: int, seen: dict[str, float],
              rss: RssSampler, timeout: float) -> PhaseResult:
    created: dict[str, float] = {}
    local = threading.local()
    cpu_before = cpu_seconds(target.processes)
    rss.reset()
    start = time.monotonic()

    def create(item: tuple[int, float]) -> None:
        index, offset = item
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if not hasattr(local, "client"):
            local.client = target.client()
        job = f"{prefix}-{index:04d}"
        response = local.client.post(CR_PATH, json=manifest(job))
        response.raise_for_status()
        created[job] = time.monotonic()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(create, enumerate(offsets)))
    create_seconds = time.monotonic() - start
    names = sorted(created)
    deadline = time.monotonic() + timeout
    while (done := sum(1 for n in names if f"{n}-trainer" in seen)) < len(names):
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: timeout with {done} of {len(names)} Jobs")
        time.sleep(0.05)
    last_job = max(seen[f"{n}-trainer"] for n in names)
    cpu_after = cpu_seconds(target.processes)
    latencies = sorted((seen[f"{n}-trainer"] - created[n]) * 1000 for n in names)
    return PhaseResult(name=name, n=len(names), seconds_to_create=create_seconds,
                       jobs_per_s=len(names) / (last_job - start), p50_ms=statistics.median(latencies),
                       p95_ms=latencies[int(0.95 * (len(latencies) - 1))], peak_rss_mb=rss.peak / 2**20,
                       cpu={k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real", action="store_true", help="the real core server (scripts/realk8s.sh) instead of "
                                                            "the emulator")
    parser.add_argument("--rate", type=float, default=None, help="sustained phase: creates per second "
                                                                 "(default 20 with --real, else 0 = skip)")
    parser.add_argument("--duration", type=float, default=30.0, help="sustained phase: seconds")
    parser.add_argument("--jobs", type=int, default=500, help="burst phase: AlignmentJobs (0 = skip)")
    parser.add_argument("--clients", type=int, default=8, help="parallel API clients creating AlignmentJobs")
    parser.add_argument("--port-base", type=int, default=26000, help="--real: REALK8S_PORT_BASE of the instance")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to keep sampling RSS after the last "
                                                                   "phase (status daemons write Pending)")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    rate = args.rate if args.rate is not None else (20.0 if args.real else 0.0)
    mode = "real" if args.real else "emulator"

    with ExitStack() as stack:
        target = real_target(stack, args.port_base) if args.real else emulator_target(stack)
        stop = threading.Event()
        stack.callback(stop.set)
        seen: dict[str, float] = {}
        reconnects = [0]
        threading.Thread(target=watch_jobs, args=(target, seen, stop, reconnects), daemon=True).start()
        rss = RssSampler(target.operator_pid, stop)
        # Let the operator start (imports, login, watches) before the clock starts.
        with target.client() as c:
            c.post(CR_PATH, json=manifest("warmup")).raise_for_status()
        deadline = time.monotonic() + 120
        while "warmup-trainer" not in seen:
            if time.monotonic() > deadline:
                raise SystemExit("the operator made no Job for the warm-up AlignmentJob in 120 s")
            time.sleep(0.1)
        idle_rss = rss.reset()
        load = os.getloadavg()[0]

        results: list[PhaseResult] = []
        if rate > 0:
            offsets = list(schedule(rate, args.duration, 0))
            results.append(run_phase(target, "sustained", "steady", offsets, args.clients, seen, rss, args.timeout))
        if args.jobs > 0:
            offsets = list(schedule(0, 0, args.jobs))
            results.append(run_phase(target, "burst", "burst", offsets, args.clients, seen, rss, args.timeout))
        peak_before_settle = rss.peak
        time.sleep(args.settle)
        settled_peak = max(rss.peak, peak_before_settle)
        settled_rss = psutil.Process(target.operator_pid).memory_info().rss
        with target.client() as c:
            items = c.get(CR_PATH).json()["items"]
        live = len(items)
        pending = sum(1 for j in items if (j.get("status") or {}).get("phase") == "Pending")

    print(f"{mode}: load average {load:.1f} at the start (2 cores shared with other work); operator idle RSS "
          f"{idle_rss / 2**20:.0f} MiB, peak {settled_peak / 2**20:.0f} MiB with {live} live AlignmentJobs "
          f"({pending} Pending after {args.settle:.0f}s), {settled_rss / 2**20:.0f} MiB at the end; "
          f"Job watch resumed {reconnects[0]} time(s)")
    for r in results:
        total = sum(r.cpu.values()) or 1.0
        shares = ", ".join(f"{k} {v:.1f}s ({100 * v / total:.0f}%)" for k, v in sorted(r.cpu.items(),
                                                                                   key=lambda kv: -kv[1]))
        print(f"{r.name}: {r.n} created in {r.seconds_to_create:.1f}s; CPU: {shares}")
    for r in results:
        print(r.line(mode, live))
    return 0


if __name__ == "__main__":
    sys.exit(main())
