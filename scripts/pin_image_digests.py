#!/usr/bin/env python3
"""Release step: resolve the chart's image tags to digests and pin them in values.yaml (`image.digest`,
`trainer.image.digest`), so an installed chart runs exactly the images that were released, whatever later
happens to the tags. The chart's `align-operator.imageRef` uses the digest whenever one is set.

Each digest comes from `--digest operator=sha256:...` (e.g. from `docker buildx build --metadata-file`), or is
resolved from the registry: `HEAD /v2/<name>/manifests/<tag>` (OCI distribution API; anonymous bearer token
when the registry asks for one, or $REGISTRY_TOKEN) and its `Docker-Content-Digest` (for a multi-arch image,
the digest of its index). values.yaml is edited line by line so every `##` comment stays; the chart README is
regenerated.

    python scripts/pin_image_digests.py                      # tags default to the chart's appVersion
    python scripts/pin_image_digests.py --tag 0.2.0 --digest trainer=sha256:<64 hex>
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Callable

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "align-operator"
#: image name -> path of its mapping in values.yaml
IMAGES = {"operator": ("image",), "trainer": ("trainer", "image")}
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ACCEPT = ", ".join(("application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"))


class ReleaseError(RuntimeError):
    pass


def split_reference(repository: str) -> tuple[str, str]:
    """(registry host, repository path) as Docker reads a reference without a tag."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "registry-1.docker.io", repository if rest else f"library/{repository}"


def _bearer(challenge: str, client: httpx.Client) -> str:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not challenge.lower().startswith("bearer") or "realm" not in params:
        raise ReleaseError(f"unsupported registry authentication: {challenge!r}")
    realm = params.pop("realm")
    reply = client.get(realm, params=params)
    reply.raise_for_status()
    body = reply.json()
    return body.get("token") or body["access_token"]


def resolve(repository: str, tag: str, client: httpx.Client | None = None) -> str:
    """The digest the registry serves for repository:tag."""
    registry, name = split_reference(repository)
    scheme = "http" if registry.split(":")[0] in ("localhost", "127.0.0.1") else "https"
    url = f"{scheme}://{registry}/v2/{name}/manifests/{tag}"
    own = client is None
    client = client or httpx.Client(timeout=30, follow_redirects=True)
    try:
        headers = {"Accept": ACCEPT}
        if os.environ.get("REGISTRY_TOKEN"):
            headers["Authorization"] = f"Bearer {os.environ['REGISTRY_TOKEN']}"
        reply = client.head(url, headers=headers)
        if reply.status_code == 401 and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {_bearer(reply.headers.get('www-authenticate', ''), client)}"
            reply = client.head(url, headers=headers)
        if reply.status_code != 200:
            raise ReleaseError(f"{repository}:{tag}: registry answered {reply.status_code} for {url}")
        digest = reply.headers.get("docker-content-digest", "")
        if not DIGEST.match(digest):
            raise ReleaseError(f"{repository}:{tag}: no sha256 Docker-Content-Digest in the registry's answer")
        return digest
    finally:
        if own:
            client.close()


def set_value(text: str, path: tuple[str, ...], value: str) -> str:
    """values.yaml with the scalar at `path` replaced, comments and layout untouched (simple block YAML)."""
    lines = text.splitlines(keepends=True)
    stack: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z0-9_.-]+):(.*)$", line.rstrip("\n"))
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        if tuple(k for _, k in stack) == path:
            lines[index] = f"{match.group(1)}{key}: {value}\n"
            return "".join(lines)
    raise ReleaseError(f"values.yaml has no {'.'.join(path)}")


def pin(chart: Path, tag: str | None, digests: dict[str, str],
        resolver: Callable[[str, str], str] = resolve) -> dict[str, str]:
    """Pin every image of the chart; returns image -> digest."""
    values_path = chart / "values.yaml"
    text = values_path.read_text()
    values = yaml.safe_load(text)
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    pinned = {}
    for image, path in IMAGES.items():
        spec = values
        for part in path:
            spec = spec[part]
        image_tag = tag or spec.get("tag") or str(app_version)
        digest = digests.get(image) or resolver(spec["repository"], image_tag)
        if not DIGEST.match(digest):
            raise ReleaseError(f"{image}: {digest!r} is not a sha256 digest")
        text = set_value(text, (*path, "digest"), f'"{digest}"')
        text = set_value(text, (*path, "tag"), f'"{image_tag}"')
        pinned[image] = digest
    values_path.write_text(text)
    sys.path.insert(0, str(REPO / "scripts"))
    import gen_chart_readme

    (chart / "README.md").write_text(gen_chart_readme.render(chart))
    return pinned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--tag", help="tag to resolve (default: the value's tag, else the chart's appVersion)")
    parser.add_argument("--digest", action="append", default=[], metavar="IMAGE=sha256:...",
                        help=f"a known digest ({', '.join(IMAGES)}); skips the registry for that image")
    args = parser.parse_args(argv)
    digests = dict(item.split("=", 1) for item in args.digest)
    unknown = set(digests) - set(IMAGES)
    if unknown:
        parser.error(f"unknown image(s) {sorted(unknown)}; use {', '.join(IMAGES)}")
    try:
        for image, digest in pin(args.chart, args.tag, digests).items():
            print(f"{image}: {digest}")
    except (ReleaseError, httpx.HTTPError) as exc:
        print(f"pin_image_digests: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
