"""OpenAPI v3 discovery for the emulated API server: what `kubectl apply` needs before it sends a manifest.

kubectl (1.27+) validates a manifest either on the server, when the server's OpenAPI v3 document says its PATCH
operation for the kind takes the `fieldValidation` query parameter, or else on the client against /openapi/v2.
A server without either answers `failed to download openapi`. The emulator serves the v3 index and one document
per group-version, with the operations and parameters kubectl looks for (`x-kubernetes-group-version-kind` on
post/put/patch, `fieldValidation`/`dryRun`/`fieldManager` in the query), so kubectl sends the manifest and the
server side (here: the operator's own validation of the spec, reported in status) decides.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

INDEX_PATH = "/openapi/v3"

#: Query parameters of writes that kubectl checks for before it relies on server-side validation.
WRITE_PARAMETERS = [{"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                    for name in ("dryRun", "fieldManager", "fieldValidation")]


def group_version_path(group: str, version: str) -> str:
    """"api/v1" for the core group, "apis/<group>/<version>" otherwise (the keys of the v3 index)."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def index(group_versions: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The /openapi/v3 answer: where each group-version's document is."""
    paths = {group_version_path(g, v): {"serverRelativeURL": f"{INDEX_PATH}/{group_version_path(g, v)}"}
             for g, v in sorted(set(group_versions))}
    return {"paths": paths}


def _operation(action: str, group: str, version: str, kind: str, plural: str, write: bool) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": f"{action}{kind}", "x-kubernetes-action": action,
                          "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                          "responses": {"200": {"description": "OK"}}, "tags": [plural]}
    if write:
        op["parameters"] = list(WRITE_PARAMETERS)
    return op


def document(group: str, version: str, kinds: Iterable[tuple[str, str, bool]]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version; `kinds` are (kind, plural, namespaced)."""
    base = "/" + group_version_path(group, version)
    paths: dict[str, Any] = {}
    for kind, plural, namespaced in kinds:
        collection = f"{base}/namespaces/{{namespace}}/{plural}" if namespaced else f"{base}/{plural}"
        paths[collection] = {"get": _operation("list", group, version, kind, plural, False),
                             "post": _operation("post", group, version, kind, plural, True)}
        paths[f"{collection}/{{name}}"] = {"get": _operation("get", group, version, kind, plural, False),
                                           "put": _operation("put", group, version, kind, plural, True),
                                           "patch": _operation("patch", group, version, kind, plural, True),
                                           "delete": _operation("delete", group, version, kind, plural, False)}
    return {"openapi": "3.0.0", "info": {"title": "align-operator local cluster", "version": version}, "paths": paths,
            "components": {"schemas": {}}}


def answer(path: str, resources: Mapping[Any, Any]) -> dict[str, Any] | None:
    """The JSON for an /openapi/v3[/...] request from the emulator's resources (kmock resource -> info), or None
    when the path names no group-version it serves."""
    served: dict[tuple[str, str], list[tuple[str, str, bool]]] = {}
    for resource, info in resources.items():
        served.setdefault((resource.group or "", resource.version), []).append(
            (info.kind, resource.plural, bool(info.namespaced)))
    path = path.rstrip("/")
    if path == INDEX_PATH:
        return index(served)
    for (group, version), kinds in served.items():
        if path == f"{INDEX_PATH}/{group_version_path(group, version)}":
            return document(group, version, kinds)
    return None
