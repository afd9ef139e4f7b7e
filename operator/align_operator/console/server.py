"""The console's HTTP server (aiohttp): HTML shells, a read-only JSON API and the static assets.

Only GET routes exist: a write method gets 405 from aiohttp's router. Bound to loopback, requests must name a
loopback host (a web page elsewhere cannot reach the console through DNS rebinding). Cluster reads run in worker
threads (the kubernetes client blocks); API errors become JSON {"error"} with the server's status code.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import math
from datetime import datetime, timezone
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from align_operator.client import ClusterError, JobNotFound
from align_operator.console import series, views
from align_operator.console.sources import ClusterSource

STATIC = Path(__file__).resolve().parent / "static"
#: The charting library, copied into the package at build time (scripts/vendor_console_assets.sh); not in git.
VENDOR_FILES = ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css")
PAGES = {"jobs", "job", "evaluation", "compare"}
SOURCE_KEY = web.AppKey("source", ClusterSource)
SETTINGS_KEY = web.AppKey("settings", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def missing_assets(static: Path = STATIC) -> list[str]:
    return [name for name in VENDOR_FILES if not (static / name).is_file()]


def _clean(value: Any) -> Any:
    """JSON without NaN/Infinity (browsers reject them): non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(_clean(data), status=status, dumps=lambda d: json.dumps(d, allow_nan=False))


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Cluster errors as JSON with the API server's status (404 for a missing job, 403 for RBAC, else 502)."""
    try:
        return await handler(request)
    except JobNotFound as exc:
        return _json({"error": str(exc)}, 404)
    except ClusterError as exc:
        return _json({"error": str(exc)}, exc.status if exc.status in (401, 403, 404) else 502)


def loopback_only(allowed_hosts: set[str]) -> Callable[..., Any]:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.url.host or ""
        if host not in allowed_hosts:
            return web.Response(status=421, text=f"the console answers only to a loopback host name, not {host!r}")
        return await handler(request)
    return check


def _shell(page: str, settings: dict[str, Any]) -> web.Response:
    """The HTML of a page; the browser renders it from the JSON API (static/app.js)."""
    missing = missing_assets(STATIC)
    if missing:
        return web.Response(status=503, content_type="text/html", text=(
            "<!doctype html><title>align console: charting library missing</title><h1>Charting library missing</h1>"
            f"<p>{html.escape(', '.join(missing))} not found under {html.escape(str(STATIC))}. The console vendors "
            "uPlot at build time (no CDN): run <code>scripts/vendor_console_assets.sh</code> (needs npm) or install "
            "a wheel/image built with it.</p>"))
    config = html.escape(json.dumps({"page": page, "poll": settings["poll"]}))
    return web.Response(content_type="text/html", text=f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>align console</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/vendor/uPlot.min.css">
<link rel="stylesheet" href="/static/app.css">
</head><body data-config="{config}">
<header><a href="/" class="brand">align console</a> <nav><a href="/">Jobs</a> <a href="/compare">Compare</a></nav>
<span id="context">{html.escape(settings["context"])}</span></header>
<main id="main"><p class="muted">loading...</p></main>
<script src="/static/vendor/uPlot.iife.min.js"></script><script src="/static/app.js"></script>
</body></html>""")


def _page(name: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return _shell(name, request.app[SETTINGS_KEY])
    return handler


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise web.HTTPBadRequest(text=f"query parameter {name}: not an integer: {raw!r}") from None


async def api_jobs(request: web.Request) -> web.Response:
    q = request.query
    objs = await _run(request.app[SOURCE_KEY].jobs, q.get("namespace", ""), q.get("label", ""))
    return _json(views.page(objs, phase=q.get("phase", ""), offset=_int(request, "offset", 0),
                            limit=_int(request, "limit", 50)))


async def api_job(request: web.Request) -> web.Response:
    source, ns, name = request.app[SOURCE_KEY], request.match_info["ns"], request.match_info["name"]
    obj = await _run(source.job, ns, name)
    events, curves = await asyncio.gather(_run(source.events, ns, name), _run(source.curves, obj))
    return _json({
        "row": views.job_row(obj, datetime.now(timezone.utc)), "spec": obj.get("spec") or {},
        "status": obj.get("status") or {}, "timeline": views.timeline(obj, events),
        "checkpoints": views.checkpoints(obj, lambda step: series.at_step(curves, step)),
        "curves": curves, "logs": f"/jobs/{ns}/{name}/logs",
        "commands": {"logs": f"alignctl logs {name} -n {ns}", "describe": f"alignctl describe {name} -n {ns}"},
    })


async def api_evaluation(request: web.Request) -> web.Response:
    source, ns, name = request.app[SOURCE_KEY], request.match_info["ns"], request.match_info["name"]
    obj = await _run(source.job, ns, name)
    document, problem = await _run(source.evaluation, obj)
    return _json({"job": name, "namespace": ns, "phase": (obj.get("status") or {}).get("phase"),
                  "problem": problem, **views.evaluation_view(obj.get("status") or {}, document)})


async def api_compare(request: web.Request) -> web.Response:
    source = request.app[SOURCE_KEY]
    refs = [r for r in request.query.getall("job", []) if r]
    if len(refs) < 2:
        raise web.HTTPBadRequest(text="compare needs two or more job=NAMESPACE/NAME parameters")
    keys = []
    for ref in refs:
        ns, _, name = ref.partition("/")
        if not name:
            raise web.HTTPBadRequest(text=f"job={ref!r}: expected NAMESPACE/NAME")
        keys.append((ns, name))
    objs = await asyncio.gather(*(_run(source.job, ns, name) for ns, name in keys))
    curves = await asyncio.gather(*(_run(source.curves, obj) for obj in objs))
    labels = [f"{ns}/{name}" for ns, name in keys]
    by_label = dict(zip(labels, objs))
    return _json({"jobs": labels, "phases": {label: (o.get("status") or {}).get("phase") for label, o in by_label.items()},
                  "curves": dict(zip(labels, curves)),
                  "diff": views.spec_diff({label: o.get("spec") or {} for label, o in by_label.items()})})


async def job_logs(request: web.Request) -> web.Response:
    source, ns, name = request.app[SOURCE_KEY], request.match_info["ns"], request.match_info["name"]
    pod, lines = await _run(source.log_lines, ns, name, _int(request, "tail", 2000))
    if pod is None:
        return web.Response(status=404, text=f"{ns}/{name} has no trainer pod (yet)\n")
    return web.Response(text=f"# pod {ns}/{pod}\n" + "\n".join(lines) + "\n")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app(source: ClusterSource, *, poll: float = 2.0, context: str = "",
             allowed_hosts: set[str] | None = None) -> web.Application:
    """The console app. `allowed_hosts`: the Host names it answers to (None = any, for a pod behind a Service)."""
    middlewares = [errors] if allowed_hosts is None else [loopback_only(allowed_hosts), errors]
    app = web.Application(middlewares=middlewares)
    app[SOURCE_KEY] = source
    app[SETTINGS_KEY] = {"poll": poll, "context": context}
    app.router.add_get("/", _page("jobs"))
    app.router.add_get("/compare", _page("compare"))
    app.router.add_get("/jobs/{ns}/{name}", _page("job"))
    app.router.add_get("/jobs/{ns}/{name}/evaluation", _page("evaluation"))
    app.router.add_get("/jobs/{ns}/{name}/logs", job_logs)
    app.router.add_get("/api/jobs", api_jobs)
    app.router.add_get("/api/jobs/{ns}/{name}", api_job)
    app.router.add_get("/api/jobs/{ns}/{name}/evaluation", api_evaluation)
    app.router.add_get("/api/compare", api_compare)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static", STATIC, follow_symlinks=False)
    return app


def loopback_hosts(address: str) -> set[str] | None:
    """The Host names a console bound to `address` accepts: loopback names for a loopback bind, else any."""
    try:
        loop = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loop = address == "localhost"
    return {"127.0.0.1", "localhost", "::1", address} if loop else None
