"""alignctl console: a read-only web console over the user's kubeconfig (jobs, live curves, evaluations, compare)."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from align_operator.cli import app
from align_operator.cli.cluster import (Context, Kubeconfig, Namespace, Server, console, err_console, fail,
                                        make_client)


@app.command("console", rich_help_panel="Results")
def console_cmd(
    address: Annotated[str, typer.Option(help="Address to listen on. The default answers only on this machine; "
                                              "0.0.0.0 serves everyone who can reach it, with YOUR cluster access.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8765,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A",
                                                 help="List jobs of every namespace by default.")] = False,
    poll: Annotated[float, typer.Option(help="Seconds between two refreshes of an open page.", min=0.5)] = 2.0,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None, server: Server = None,
) -> None:
    """Serve the web console: jobs, live training curves, evaluation answers side by side, run comparison.

    Read-only: it gets and lists jobs, pods, events and logs with your kubeconfig's credentials (the access
    `alignctl get` has) and never writes. Stop it with Ctrl-C.
    """
    from align_operator.console.server import loopback_hosts, make_app, missing_assets
    from align_operator.console.sources import ClusterSource

    missing = missing_assets()
    if missing:
        fail(f"the console's charting library is missing ({', '.join(missing)}): run scripts/vendor_console_assets.sh "
             "(needs npm), or install a build that includes it")
    client = make_client(kubeconfig, context, namespace, server)
    source = ClusterSource(client, all_namespaces=all_namespaces)
    label = f"{client.host} ({'all namespaces' if all_namespaces else 'namespace ' + client.namespace})"
    allowed = loopback_hosts(address)
    if allowed is None and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        err_console.print(f"[yellow]warning:[/yellow] listening on {address}: anyone who can reach this port reads "
                          "the cluster with your credentials (the console has no login)")
    web_app = make_app(source, poll=poll, context=label, allowed_hosts=allowed)
    asyncio.run(_serve(web_app, address, port))


async def _serve(web_app: object, address: str, port: int) -> None:
    from aiohttp import web

    runner = web.AppRunner(web_app)  # type: ignore[arg-type]
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        fail(f"cannot listen on {address}:{port}: {exc.strerror or exc}")
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = "127.0.0.1" if address in ("0.0.0.0", "") else address
    console.print(f"align console on http://{'[' + shown + ']' if ':' in shown else shown}:{bound}/ (Ctrl-C stops it)",
                  soft_wrap=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
