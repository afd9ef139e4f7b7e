"""The kubelet's log endpoint for the node agent: what the API server calls to answer `kubectl logs`.

A real kube-apiserver answers `GET /api/v1/namespaces/{ns}/pods/{pod}/log` by connecting to the pod's Node
(address from `status.addresses`, port from `status.daemonEndpoints.kubeletEndpoint.Port`) over HTTPS and
fetching `/containerLogs/{ns}/{pod}/{container}` with the same query (tailLines, limitBytes, follow). Without
`--kubelet-certificate-authority` it does not verify the kubelet's certificate (the usual self-signed kubelet
serving certificate), so a self-signed one made at start serves here. The local cluster's emulated API server proxies
to the same endpoint. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import ssl
from pathlib import Path
from typing import Callable

import aiohttp.web

from .kubelet import log_path

#: A DNS-1123 name: namespaces and pod names; nothing else reaches the file system.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
FOLLOW_POLL_SECONDS = 0.2


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A serving certificate for 127.0.0.1 (made once, kept in `directory`)."""
    cert, key = directory / "kubelet.crt", directory / "kubelet.key"
    if cert.is_file() and key.is_file():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    directory.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "align-node-agent")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                               x509.DNSName("localhost")]), critical=False)
                   .sign(private, hashes.SHA256()))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    key.chmod(0o600)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def select(text: bytes, tail_lines: str | None, limit_bytes: str | None) -> bytes:
    """tailLines then limitBytes, as the kubelet applies them."""
    if tail_lines is not None and tail_lines.isdigit():
        lines = text.splitlines(keepends=True)
        text = b"".join(lines[-int(tail_lines):]) if int(tail_lines) else b""
    if limit_bytes is not None and limit_bytes.isdigit():
        text = text[: int(limit_bytes)]
    return text


class LogServer:
    """HTTPS on 127.0.0.1: `GET /containerLogs/{namespace}/{pod}/{container}`."""

    def __init__(self, workdir: Path, running: Callable[[str, str], bool]):
        self.workdir = workdir
        self.running = running  # is the pod's process still running (follow ends when it is not)
        self._runner: aiohttp.web.AppRunner | None = None

    async def start(self, port: int = 0) -> int:
        app = aiohttp.web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/healthz", lambda _: aiohttp.web.Response(text="ok"))
        # a stopping node does not wait for log readers (a `kubectl logs -f` stream ends with the node)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        cert, key = self_signed(self.workdir / "pki")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=context)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]  # aiohttp names no getter

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _logs(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        ns, pod = request.match_info["namespace"], request.match_info["pod"]
        if not (_NAME.match(ns) and _NAME.match(pod)):
            raise aiohttp.web.HTTPBadRequest(text="invalid namespace or pod name")
        path = log_path(self.workdir, ns, pod)
        if not path.is_file():
            raise aiohttp.web.HTTPNotFound(text=f'container log of pod "{ns}/{pod}" not found on this node')
        query = request.query
        data = path.read_bytes()
        text = select(data, query.get("tailLines"), query.get("limitBytes"))
        if query.get("follow") not in ("true", "1"):
            return aiohttp.web.Response(body=text, content_type="text/plain")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            await response.write(text)
            await self._follow(response, path, ns, pod, len(data))
            await response.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the reader went away (kubectl logs -f interrupted)
        return response

    async def _follow(self, response: aiohttp.web.StreamResponse, path: Path, ns: str, pod: str, offset: int) -> None:
        """Stream what the process writes until it has exited and everything is sent."""
        while True:
            alive = self.running(ns, pod)
            size = path.stat().st_size
            if size > offset:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    await response.write(handle.read(size - offset))
                offset = size
            elif not alive:
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
