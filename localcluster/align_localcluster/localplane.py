"""A persistent local control plane for `alignctl local up / down / status`.

`up` starts it in the background and writes a kubeconfig, so `kubectl apply -f examples/dpo.yaml` and
`alignctl get / describe / logs / wait` work as on a cluster until `down`. Two kinds behind one interface:

- **emulator** (the default): one background process (`python -m align_localcluster.localplane serve`) holds
  the local cluster: the emulated API server, the Job controller and the node agent; the operator runs as its own child
  process. Objects live in that process's memory (`down` forgets them); pod volumes, logs and adapters stay in the
  work directory.
- **real** (`--real`): `scripts/realk8s.sh up` (etcd, kube-apiserver 1.20, kube-controller-manager, and the 1.36
  CRD server when built), the CRD installed, then the operator and the node agent as background processes, each
  pointed at the real server by its kubeconfig. As the chart does, the operator serves the validating admission
  webhook (on 127.0.0.1, TLS made here) and a ValidatingWebhookConfiguration registers it (webhook.py), so
  `kubectl apply` of an invalid manifest fails at apply time as on a cluster. Needs the binaries (`scripts/realk8s.sh build`, cached under
  ~/.cache/realk8s) and the HTTP node agent (`python -m align_localcluster.nodeagent`).

Where things are: $ALIGN_LOCAL_HOME (default ~/.align/local) holds `state.json` (what runs, with PIDs),
`kubeconfig`, `logs/` and `work/` (pod volumes and outputs). Relative data paths in manifests resolve against
the directory given as `cwd` (the directory `up` ran in, by default), as pods run there.

The real control plane's script is found at $ALIGN_REALK8S_SCRIPT, else next to this module (`realk8s.sh`, a
symlink to scripts/realk8s.sh in the source tree that wheels ship as a file), else None.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil
import yaml

HOME_ENV = "ALIGN_LOCAL_HOME"
SCRIPT_ENV = "ALIGN_REALK8S_SCRIPT"
REALK8S_BINARIES = ("kube-apiserver", "kube-controller-manager")
#: Default REALK8S_PORT_BASE of the local plane: above Linux's ephemeral ports (32768-60999) and the test
#: fixture's ranges (20000-59999), so its ports are rarely taken.
REAL_PORT_BASE = 61000
NODE_AGENT_MODULE = "align_localcluster.nodeagent"
MODES = ("auto", "emulator", "real")


class PlaneError(RuntimeError):
    """The local control plane cannot start or stop; the message says why and what to do."""


@dataclass
class PlaneState:
    """What `up` started (state.json): enough for `status` and `down` in another process."""

    mode: str
    server: str
    kubeconfig: str
    workdir: str
    cwd: str
    #: role -> PID of each background process `down` stops ("plane", "operator", "node agent").
    processes: dict[str, int] = field(default_factory=dict)
    realk8s_state: str | None = None
    started: str = ""
    #: The admission webhook's URL (real plane), registered on the API server.
    webhook: str | None = None


# ------------------------------------------------------------------------------------------ locations
def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".align" / "local")


def realk8s_home() -> Path:
    return Path(os.environ.get("REALK8S_HOME") or Path.home() / ".cache" / "realk8s")


def realk8s_script() -> Path | None:
    """scripts/realk8s.sh: $ALIGN_REALK8S_SCRIPT, else the copy shipped next to this module."""
    explicit = os.environ.get(SCRIPT_ENV)
    if explicit:
        return Path(explicit)
    shipped = Path(__file__).with_name("realk8s.sh")
    return shipped if shipped.is_file() else None


def real_binaries_built() -> bool:
    return all((realk8s_home() / "bin" / name).is_file() for name in REALK8S_BINARIES)


def node_agent_available() -> bool:
    return importlib.util.find_spec(NODE_AGENT_MODULE) is not None


def node_agent_command(kubeconfig: Path, workdir: Path) -> list[str]:
    """The node agent of the real plane: registers a Node, binds and runs the pods the Job controller makes."""
    return [sys.executable, "-m", NODE_AGENT_MODULE, "--kubeconfig", str(kubeconfig), "--workdir", str(workdir)]


def choose_mode(requested: str) -> str:
    """auto = real when it can run pods (binaries built, HTTP node agent present), else the emulator."""
    if requested not in MODES:
        raise PlaneError(f"mode must be one of {', '.join(MODES)}, not {requested!r}")
    if requested != "auto":
        return requested
    return "real" if real_binaries_built() and realk8s_script() and node_agent_available() else "emulator"


def read_state(home: Path) -> PlaneState | None:
    path = home / "state.json"
    if not path.is_file():
        return None
    return PlaneState(**json.loads(path.read_text()))


def write_state(home: Path, state: PlaneState) -> None:
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / "state.json.tmp"
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(home / "state.json")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def running(state: PlaneState) -> dict[str, bool]:
    return {role: alive(pid) for role, pid in state.processes.items()}


# ------------------------------------------------------------------------------------------ up
def up(home: Path, *, mode: str = "auto", cwd: Path | None = None, port: int = 0, port_base: int | None = None,
       timeout: float = 120.0) -> PlaneState:
    """Start the plane in the background (or return the one already running). Raises PlaneError."""
    home = home.resolve()
    existing = read_state(home)
    if existing is not None:
        if existing.processes and all(running(existing).values()):
            return existing
        down(home)  # leftovers of a crashed plane: clean them up before starting again
    chosen = choose_mode(mode)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    (home / "work").mkdir(parents=True, exist_ok=True)
    cwd = (cwd or Path.cwd()).resolve()
    if chosen == "emulator":
        return _up_emulator(home, cwd, port, timeout)
    return _up_real(home, cwd, REAL_PORT_BASE if port_base is None else port_base, timeout)


def _spawn(argv: Sequence[str], log: Path, *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A background process in its own session (a closed terminal does not stop it), output to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env, start_new_session=True)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def _up_emulator(home: Path, cwd: Path, port: int, timeout: float) -> PlaneState:
    log = home / "logs" / "plane.log"
    proc = _spawn([sys.executable, "-m", "align_localcluster.localplane", "serve", "--home", str(home),
                   "--port", str(port), "--cwd", str(cwd)], log, cwd=cwd)
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(home)
        if state is not None and state.processes.get("plane") == proc.pid:
            return state
        if proc.poll() is not None:
            raise PlaneError(f"the local plane exited with code {proc.returncode}:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            _stop_pid(proc.pid)
            raise PlaneError(f"the local plane was not ready after {timeout:.0f}s:\n{_log_tail(log)}")
        time.sleep(0.2)


def _realk8s(command: str, state_dir: Path, port_base: int) -> str:
    script = realk8s_script()
    if script is None:
        raise PlaneError(f"scripts/realk8s.sh not found: set ${SCRIPT_ENV} to its path")
    env = {**os.environ, "REALK8S_STATE": str(state_dir), "REALK8S_PORT_BASE": str(port_base),
           "REALK8S_HOME": str(realk8s_home())}
    proc = subprocess.run(["bash", str(script), command], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise PlaneError(f"{script} {command} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def register_webhook(kubeconfig: Path, port: int, ca_pem: bytes, operator_running: Callable[[], bool], log: Path,
                     timeout: float = 60.0) -> str:
    """webhook.register, with the operator's log in the error when the API server never calls it."""
    from . import webhook
    try:
        return webhook.register(kubeconfig, port, ca_pem, operator_running, timeout)
    except webhook.NotCalled as exc:
        raise PlaneError(f"{exc}:\n{_log_tail(log)}") from None


def install_crd(kubeconfig: Path, timeout: float = 60.0) -> None:
    """Create the AlignmentJob CRD on the server of `kubeconfig` (tolerating an existing one); wait until served."""
    from align_api.crd import build_crd

    from .kube import http_client
    with http_client(kubeconfig) as client:
        crd = build_crd()
        response = client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
        if response.status_code not in (201, 409):
            raise PlaneError(f"the API server refused the CRD: {response.status_code} {response.text[:500]}")
        group, version = crd["spec"]["group"], crd["spec"]["versions"][0]["name"]
        path = f"/apis/{group}/{version}/{crd['spec']['names']['plural']}"
        deadline = time.monotonic() + timeout
        while client.get(path).status_code != 200:
            if time.monotonic() > deadline:
                raise PlaneError(f"the CRD was not served at {path} after {timeout:.0f}s")
            time.sleep(0.2)


def operator_env(settings: dict[str, Any]) -> dict[str, str]:
    from align_operator.settings import Settings
    return {**os.environ, **Settings.from_env({}, **settings).to_env()}


def _up_real(home: Path, cwd: Path, port_base: int, timeout: float) -> PlaneState:
    from . import LOCAL_SETTINGS, webhook
    if not real_binaries_built():
        raise PlaneError(f"the real control plane is not built (no {', '.join(REALK8S_BINARIES)} under "
                         f"{realk8s_home() / 'bin'}): run scripts/realk8s.sh build (3-6 min), or use the emulator")
    if not node_agent_available():
        raise PlaneError(f"--real needs the HTTP node agent ({NODE_AGENT_MODULE}) to run pods; this build has none")
    state_dir = home / "realk8s"
    state = PlaneState(mode="real", server="", kubeconfig=str(home / "kubeconfig"), workdir=str(home / "work"),
                       cwd=str(cwd), realk8s_state=str(state_dir),
                       started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_state(home, state)  # from here on, `down` stops whatever started (also after a failure below)
    try:
        _realk8s("up", state_dir, port_base)
        shutil.copy(state_dir / "kubeconfig", home / "kubeconfig")
        config = yaml.safe_load((home / "kubeconfig").read_text())
        state.server = config["clusters"][0]["cluster"]["server"]
        install_crd(home / "kubeconfig", timeout=timeout)
        port = port_base + webhook.PORT_OFFSET
        ca_pem = webhook.write_tls(home / "webhook-tls")
        operator_log = home / "logs" / "operator.log"
        operator = _spawn([sys.executable, "-m", "align_operator", "--kubeconfig", str(home / "kubeconfig"),
                           "--all-namespaces"], operator_log, cwd=cwd,
                          env={**operator_env(LOCAL_SETTINGS), **webhook.operator_env(port, home / "webhook-tls")})
        state.processes["operator"] = operator.pid
        write_state(home, state)
        state.webhook = register_webhook(home / "kubeconfig", port, ca_pem, lambda: operator.poll() is None,
                                         operator_log, timeout)
        agent = _spawn(node_agent_command(home / "kubeconfig", home / "work"), home / "logs" / "node-agent.log",
                       cwd=cwd)
        state.processes["node agent"] = agent.pid
        write_state(home, state)
    except BaseException:
        write_state(home, state)
        down(home)
        raise
    return state


# ------------------------------------------------------------------------------------------ down, status
def _stop_pid(pid: int, grace: float = 30.0) -> None:
    """SIGTERM one process we started (by PID), SIGKILL after `grace` seconds. A zombie counts as stopped: the
    operator of the emulator plane is the plane process's child, reaped only when the plane stops."""
    try:
        process = psutil.Process(pid)
        process.terminate()
    except psutil.Error:
        return
    deadline = time.monotonic() + grace
    while alive(pid):
        if time.monotonic() > deadline:
            try:
                process.kill()
            except psutil.Error:
                pass
            return
        time.sleep(0.1)


def down(home: Path) -> PlaneState | None:
    """Stop what `up` started. The emulator plane stops its own operator and pods; in the real plane the node agent
    goes first (pods get a final status), then the operator, then the servers."""
    home = home.resolve()
    state = read_state(home)
    if state is None:
        return None
    roles = ("plane",) if "plane" in state.processes else ("node agent", "operator")
    for role in roles:
        pid = state.processes.get(role)
        if pid is not None and alive(pid):
            _stop_pid(pid)
    if state.realk8s_state:
        _realk8s("down", Path(state.realk8s_state), REAL_PORT_BASE)
    (home / "state.json").unlink(missing_ok=True)
    return state


def status(home: Path) -> dict[str, Any]:
    """What runs: mode, each process (running or stopped, PID), the API server and whether it answers."""
    home = home.resolve()
    state = read_state(home)
    if state is None:
        return {"running": False, "home": str(home)}
    processes = {role: {"pid": pid, "running": alive(pid)} for role, pid in state.processes.items()}
    report: dict[str, Any] = {"running": all(p["running"] for p in processes.values()), "home": str(home),
                              "mode": state.mode, "server": state.server, "kubeconfig": state.kubeconfig,
                              "workdir": state.workdir, "cwd": state.cwd, "started": state.started,
                              "processes": processes, "api": _api_answers(Path(state.kubeconfig)),
                              "webhook": state.webhook}
    if state.realk8s_state:
        report["control plane"] = _realk8s("status", Path(state.realk8s_state), REAL_PORT_BASE).strip()
    return report


def _api_answers(kubeconfig: Path) -> bool:
    import httpx

    from .kube import http_client
    try:
        with http_client(kubeconfig) as client:
            return client.get("/api", timeout=3).status_code == 200
    except (OSError, httpx.HTTPError, KeyError, TypeError):
        return False


# ------------------------------------------------------------------------------------------ the emulator process
def serve(home: Path, port: int, cwd: Path) -> None:
    """The emulator plane's background process: the local cluster until SIGTERM/SIGINT. As on the real plane, the
    operator serves the admission webhook and the emulated API server calls it (admission.py)."""
    from . import LocalCluster, webhook
    from .kubelet import free_port
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    hook_port, tls = free_port(), home / "webhook-tls"
    ca_pem = webhook.write_tls(tls)
    settings = {"webhook_port": hook_port, "webhook_addr": "127.0.0.1", "webhook_cert_dir": str(tls)}
    log = home / "logs" / "operator.log"
    with LocalCluster(home / "work", operator="process", cwd=cwd, port=port, operator_log=log,
                      settings=settings) as sb:
        shutil.copy(sb.kubeconfig, home / "kubeconfig")
        assert sb.operator_pid is not None
        operator_pid = sb.operator_pid
        url = register_webhook(home / "kubeconfig", hook_port, ca_pem, lambda: alive(operator_pid), log)
        write_state(home, PlaneState(
            mode="emulator", server=sb.url, kubeconfig=str(home / "kubeconfig"), workdir=str(sb.workdir),
            cwd=str(cwd), processes={"plane": os.getpid(), "operator": sb.operator_pid},
            started=datetime.now(timezone.utc).isoformat(timespec="seconds"), webhook=url))
        print(f"local plane: API {sb.url}, KUBECONFIG={home / 'kubeconfig'}", flush=True)
        stop.wait()
        print("local plane: stopping", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m align_localcluster.localplane")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the emulator plane in the foreground (alignctl local up starts it)")
    run.add_argument("--home", type=Path, default=default_home())
    run.add_argument("--port", type=int, default=0)
    run.add_argument("--cwd", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    serve(args.home.resolve(), args.port, args.cwd.resolve())


if __name__ == "__main__":
    main()
