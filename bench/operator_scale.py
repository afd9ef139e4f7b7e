"""Operator scale: N AlignmentJobs against the emulated API server, the operator as its own process.

Measures, in one run: AlignmentJobs turned into Jobs per second (first create to last Job), the latency from
each AlignmentJob's create to its Job appearing (p50/p95, from a watch on Jobs), and the operator's peak RSS.
No pods run (the node agent is off): this is the operator's own cost.

    python bench/operator_scale.py [--jobs 500] [--clients 8]

The last line is `operator_scale: ...`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil

from align_operator.sandbox import Sandbox


def manifest(index: int) -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": f"scale-{index:04d}"},
            "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"},
                     "data": {"train": {"uri": "data/pairs.jsonl"}}, "resources": {"gpusPerNode": 1}}}


def watch_jobs(url: str, seen: dict[str, float], stop: threading.Event) -> None:
    """Record when each Job first appears (ADDED on a watch, timed here)."""
    with httpx.Client(base_url=url, timeout=None) as client:
        with client.stream("GET", "/apis/batch/v1/jobs", params={"watch": "true"}) as response:
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                name = (event.get("object") or {}).get("metadata", {}).get("name", "")
                if event.get("type") == "ADDED" and name not in seen:
                    seen[name] = time.monotonic()


def sample_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], process.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8, help="parallel API clients creating AlignmentJobs")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)

    # Production settings of the operator (not the sandbox's quick polls), no metrics port.
    settings = {"scrape_interval_seconds": 15.0, "status_interval_seconds": 10.0, "upstream_poll_seconds": 10.0}
    with Sandbox(operator="process", node_agent=False, settings=settings) as sb:
        pid = sb.operator_pid
        assert pid is not None
        stop = threading.Event()
        seen: dict[str, float] = {}
        peak = [0]
        threading.Thread(target=watch_jobs, args=(sb.url, seen, stop), daemon=True).start()
        threading.Thread(target=sample_rss, args=(pid, peak, stop), daemon=True).start()
        # Let the operator start (imports, login, watches) before the clock starts.
        sb.apply(manifest(-1) | {"metadata": {"name": "warmup"}})
        sb.wait_for(lambda: "warmup-trainer" in seen, timeout=60)
        idle_rss = psutil.Process(pid).memory_info().rss

        created: dict[str, float] = {}
        local = threading.local()

        def create(index: int) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=sb.url, timeout=30)
            doc = manifest(index)
            response = local.client.post("/apis/align.dev/v1alpha1/namespaces/default/alignmentjobs", json=doc)
            response.raise_for_status()
            created[doc["metadata"]["name"]] = time.monotonic()

        start = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(create, range(args.jobs)))
        create_seconds = time.monotonic() - start
        print(f"created in {create_seconds:.1f}s; Jobs so far {len(seen)}", file=sys.stderr, flush=True)
        names = [f"scale-{i:04d}" for i in range(args.jobs)]
        deadline = time.monotonic() + args.timeout
        while sum(1 for n in names if f"{n}-trainer" in seen) < args.jobs:
            if time.monotonic() > deadline:
                print(f"timeout: {sum(1 for n in names if f'{n}-trainer' in seen)} of {args.jobs} Jobs", file=sys.stderr)
                return 1
            time.sleep(0.05)
        last_job = max(seen[f"{n}-trainer"] for n in names)
        time.sleep(5)  # status daemons settle (each job gets its Pending status)
        stop.set()
        pending = sum(1 for j in sb.list() if (j.get("status") or {}).get("phase") == "Pending")
        jobs = len(sb.list("Job"))

    latencies = sorted((seen[f"{n}-trainer"] - created[n]) * 1000 for n in names)
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    rate = args.jobs / (last_job - start)
    print(f"created {args.jobs} AlignmentJobs in {create_seconds:.2f}s with {args.clients} clients; "
          f"{jobs - 1} Jobs (+1 warm-up), {pending} AlignmentJobs Pending after 5s")
    print(f"operator RSS: idle {idle_rss / 2**20:.0f} MiB, peak {peak[0] / 2**20:.0f} MiB")
    print(f"operator_scale: n={args.jobs} jobs_per_s={rate:.1f} p50_ms={p50:.0f} p95_ms={p95:.0f} "
          f"peak_rss_mb={peak[0] / 2**20:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
