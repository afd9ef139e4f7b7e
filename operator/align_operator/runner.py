"""Running the operator: `python -m align_operator`, `alignctl operator` and the local cluster all come here."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Sequence

import kopf

from .settings import Settings


#: Handlers that run on every Job/pod/AlignmentJob event; Kopf would log each success at INFO.
ROUTINE_HANDLERS = ("index_jobs", "index_pods", "wake_on_job", "wake_on_pod", "phase_metric", "track")


class _RoutineFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (record.levelno <= logging.INFO and message.endswith("succeeded.")
                    and any(f"'{name}'" in message for name in ROUTINE_HANDLERS))


def quiet_routine_logs() -> None:
    """Keep the log about what changed, not about every watch event the status plumbing saw."""
    logging.getLogger("kopf.objects").addFilter(_RoutineFilter())


def _memo(settings: Settings, kubeconfig: str | None) -> kopf.Memo:
    return kopf.Memo(settings=settings, kubeconfig=kubeconfig)


async def operate(settings: Settings, *, kubeconfig: str | None = None, clusterwide: bool = True,
                  namespaces: Sequence[str] = (), stop_flag: asyncio.Event | None = None,
                  ready_flag: asyncio.Event | None = None, standalone: bool = True,
                  liveness: str | None = None) -> None:
    """Run the operator in the current event loop until `stop_flag` is set."""
    from . import main  # noqa: F401  (registers the handlers)
    namespaces = tuple(namespaces or settings.namespaces)
    await kopf.operator(clusterwide=clusterwide and not namespaces, namespaces=namespaces, standalone=standalone,
                        stop_flag=stop_flag, ready_flag=ready_flag, memo=_memo(settings, kubeconfig),
                        liveness_endpoint=liveness)


def run(settings: Settings | None = None, *, kubeconfig: str | None = None, namespaces: Sequence[str] = (),
        standalone: bool = True, liveness: str | None = None, verbose: bool = False) -> None:
    """Run the operator in the foreground (SIGTERM/SIGINT stop it gracefully)."""
    settings = settings or Settings.from_env()
    from . import main  # noqa: F401
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if settings.log_format == "json"
                   else kopf.LogFormat.PLAIN)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    namespaces = tuple(namespaces or settings.namespaces)
    kopf.run(clusterwide=not namespaces, namespaces=namespaces, standalone=standalone,
             memo=_memo(settings, kubeconfig), liveness_endpoint=liveness)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m align_operator", description="Run the align-operator.")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument("-n", "--namespace", action="append", default=[], help="serve only these namespaces")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="serve the whole cluster (default)")
    parser.add_argument("--peering", action="store_true", help="use Kopf peering (several replicas) instead of standalone")
    parser.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    run(kubeconfig=args.kubeconfig, namespaces=args.namespace, standalone=not args.peering,
        liveness=args.liveness, verbose=args.verbose)
