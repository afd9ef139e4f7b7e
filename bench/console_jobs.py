"""Console jobs list with 1,000 AlignmentJobs in one namespace: paged (50 rows, the default) vs every row at once,
side by side in one run, in headless chromium (Debian's, driven by Playwright).

    python bench/console_jobs.py [--jobs 1000] [--seconds 6]

The console serves the real app (server.py, views.py, static/app.js, uPlot) over ClusterSource; the kubernetes
client is replaced by an in-memory one holding --jobs realistic objects (conditions, progress, ~30 status
metrics), so the numbers are the console's and the browser's, not an API server's. Per mode: time from
navigation to the rows on screen, DOM nodes, JS heap, the JSON bytes of one refresh, and the longest main-thread
task and the total time of tasks over 50 ms (PerformanceObserver "longtask") while the page refreshes itself every
second for --seconds. Prints one `console_jobs: ...` line per mode and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / p) for p in ("api", "operator")]

from aiohttp import web  # noqa: E402

from align_operator.console import server, views  # noqa: E402
from align_operator.console.sources import ClusterSource  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--enable-precise-memory-info"]
PHASES = ("Running", "Succeeded", "Failed", "Pending", "Suspended")


def job(i: int) -> dict[str, Any]:
    phase = PHASES[i % len(PHASES)]
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
            "metadata": {"name": f"job-{i:04d}", "namespace": "bench", "labels": {"team": f"t{i % 7}"},
                         "creationTimestamp": f"2026-01-{1 + i // 1440 % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00Z"},
            "spec": {"algorithm": ["dpo", "sft", "grpo", "kto"][i % 4], "model": {"base": "builtin://tiny"},
                     "hyperparameters": {"epochs": 2, "beta": 0.1}},
            "status": {"phase": phase, "progress": {"step": i % 100, "totalSteps": 100, "percent": float(i % 100)},
                       "metrics": {f"metric_{k}": k * 0.01 for k in range(30)} | {"loss": 0.5},
                       "conditions": [{"type": "Created", "status": "True", "reason": "JobCreated",
                                       "message": "Job created", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                       **({"lastError": {"reason": "TrainerError", "message": "x" * 200}} if phase == "Failed" else {})}}


class MemoryClient:
    namespace, host = "bench", "memory://"

    def __init__(self, n: int) -> None:
        self.items = [job(i) for i in range(n)]

    def list(self, **_: Any) -> list[dict[str, Any]]:
        return self.items


def serve(app: web.Application) -> tuple[str, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def start() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    return f"http://127.0.0.1:{port}", loop


OBSERVE = """() => { window.__long = []; new PerformanceObserver(l => window.__long.push(...l.getEntries().map(e => e.duration)))
                       .observe({type: "longtask", buffered: true}); }"""


def measure(browser: Any, url: str, rows: int, seconds: float) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(f"({OBSERVE})()")
    sizes: list[int] = []
    page.on("response", lambda r: sizes.append(len(r.body())) if "/api/jobs" in r.url else None)
    start = time.perf_counter()
    page.goto(f"{url}/?limit={rows}")
    page.wait_for_function(f"() => document.querySelectorAll('#jobs tbody tr').length === {rows}", timeout=120_000)
    shown = time.perf_counter() - start
    page.wait_for_timeout(seconds * 1000)  # the page refreshes itself every second meanwhile
    stats = page.evaluate("""() => ({nodes: document.getElementsByTagName('*').length,
        heap: performance.memory ? performance.memory.usedJSHeapSize : 0,
        longest: Math.max(0, ...window.__long), long_total: window.__long.reduce((a, b) => a + b, 0)})""")
    page.close()
    return {"rows": rows, "first_render_s": shown, "dom_nodes": stats["nodes"], "heap_mb": stats["heap"] / 2**20,
            "refresh_kb": (sum(sizes) / max(1, len(sizes))) / 1024, "refreshes": len(sizes),
            "longest_task_ms": stats["longest"], "long_tasks_total_ms": stats["long_total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    if server.missing_assets():
        sys.exit("uPlot is not vendored: run scripts/vendor_console_assets.sh")
    from playwright.sync_api import sync_playwright

    views.MAX_PAGE = max(views.MAX_PAGE, args.jobs)  # let the unpaged mode ask for every row
    url, _ = serve(server.make_app(ClusterSource(MemoryClient(args.jobs), ttl=0.5), poll=1.0))
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for mode, rows in (("paged", 50), ("all-rows", args.jobs)):
            results[mode] = r = measure(browser, url, rows, args.seconds)
            print(f"console_jobs: {mode} jobs={args.jobs} " + " ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
        browser.close()
    paged, full = results["paged"], results["all-rows"]
    print("console_jobs: all-rows/paged " + " ".join(
        f"{k}={full[k] / paged[k]:.3g}x" for k in ("first_render_s", "dom_nodes", "heap_mb", "refresh_kb", "long_tasks_total_ms")
        if paged[k]))


if __name__ == "__main__":
    main()
