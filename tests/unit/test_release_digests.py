"""Release: image tags resolved to digests against a registry (a local stand-in speaking the OCI distribution
API with bearer-token auth) and pinned in the chart, whose rendered objects then reference images by digest."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from tests.unit.chart_support import CHART, REPO, documents, helm_sdk_available, one, render_many

sys.path.insert(0, str(REPO / "scripts"))
import pin_image_digests as release  # noqa: E402

DIGESTS = {"align/operator": "sha256:" + "1" * 64, "align/trainer": "sha256:" + "2" * 64}


class Registry(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:  # the token endpoint
        query = parse_qs(urlparse(self.path).query)
        assert query["service"] == ["fake-registry"] and query["scope"][0].endswith(":pull")
        body = json.dumps({"token": "anon-" + query["scope"][0]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        path = urlparse(self.path).path
        name, _, tag = path[len("/v2/"):].rpartition("/manifests/")
        scope = f"repository:{name}:pull"
        if self.headers.get("Authorization") != f"Bearer anon-{scope}":
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="http://{self.headers["Host"]}/token",'
                                                 f'service="fake-registry",scope="{scope}"')
        elif name in DIGESTS and tag == "0.1.0" and "oci.image.index" in self.headers.get("Accept", ""):
            self.send_response(200)
            self.send_header("Docker-Content-Digest", DIGESTS[name])
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def chart(tmp_path: Path, registry: str) -> Path:
    copy = tmp_path / "align-operator"
    shutil.copytree(CHART, copy)
    text = (copy / "values.yaml").read_text()
    text = release.set_value(text, ("image", "repository"), f"{registry}/align/operator")
    text = release.set_value(text, ("trainer", "image", "repository"), f"{registry}/align/trainer")
    (copy / "values.yaml").write_text(text)
    return copy


def test_tags_are_resolved_to_digests_and_pinned_in_the_chart(chart: Path) -> None:
    before = (chart / "values.yaml").read_text()
    pinned = release.pin(chart, None, {})
    assert pinned == {"operator": DIGESTS["align/operator"], "trainer": DIGESTS["align/trainer"]}
    after = (chart / "values.yaml").read_text()
    values = yaml.safe_load(after)
    assert values["image"]["digest"] == DIGESTS["align/operator"] and values["image"]["tag"] == "0.1.0"
    assert values["trainer"]["image"]["digest"] == DIGESTS["align/trainer"]
    # only the four pinned lines changed: every ## comment (the README's source) is kept
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 4 and len(before.splitlines()) == len(after.splitlines())
    assert DIGESTS["align/trainer"] in (chart / "README.md").read_text()
    if helm_sdk_available():
        [out] = render_many([{"chart": str(chart), "values": {}, "namespace": "align-system", "name": "align"}])
        container = one(documents(out["manifest"]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].endswith(f"/align/operator@{DIGESTS['align/operator']}")
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["ALIGN_OPERATOR_TRAINER_IMAGE"].endswith(f"/align/trainer@{DIGESTS['align/trainer']}")


def test_a_known_digest_skips_the_registry_and_a_missing_tag_fails(chart: Path) -> None:
    given = "sha256:" + "3" * 64
    asked = []
    release.pin(chart, None, {"trainer": given, "operator": given}, resolver=lambda *a: asked.append(a) or "")
    assert asked == [] and yaml.safe_load((chart / "values.yaml").read_text())["trainer"]["image"]["digest"] == given
    with pytest.raises(release.ReleaseError, match="404"):
        release.pin(chart, "9.9.9", {})
    with pytest.raises(SystemExit):
        release.main(["--chart", str(chart), "--digest", "scheduler=" + given])
    assert release.main(["--chart", str(chart), "--tag", "9.9.9"]) == 1


def test_references_split_like_docker() -> None:
    assert release.split_reference("ghcr.io/align-operator/trainer") == ("ghcr.io", "align-operator/trainer")
    assert release.split_reference("localhost:5000/x") == ("localhost:5000", "x")
    assert release.split_reference("python") == ("registry-1.docker.io", "library/python")
    assert release.split_reference("bitnami/kubectl") == ("registry-1.docker.io", "bitnami/kubectl")
