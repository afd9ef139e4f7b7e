"""What a write does to the stored object, as a real API server does it: the writes of the emulated API server
(apiserver.py) become full, versioned objects before kmock stores them.

- create: uid, creationTimestamp, generation 1, resourceVersion (one global counter), generateName, the
  namespace from the URL, apiVersion and kind;
- update: JSON patch, merge patch or replace (PUT); the status subresource changes only status and a write of the
  object keeps it; generation bumps on spec changes; identity fields and deletionTimestamp are kept;
- server-side apply (`application/apply-patch+yaml`): create, or merge into what is stored.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
import jsonpatch
import kmock

from align_api import yamlio


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class WriteSemantics:
    """Mixin of ClusterEmulator: needs its `_current`, `_info` and `_versions`."""

    def _rewrite(self, request: kmock.Request) -> kmock.Request:
        """Turn every write into a full, versioned object so kmock's plain merge keeps K8s semantics."""
        content_type = request.headers.get("Content-Type", "")
        method = method_of(request)
        if method == "PATCH" and "apply-patch" in content_type:
            data = yamlio.load(request.text) or {}  # as a real API server reads YAML
            current = self._current(request)
            if current is None:
                data.setdefault("metadata", {})["name"] = request.name
                return self._rewrite_create(attrs.evolve(request, action=kmock.action.CREATE, data=data,
                                                         name=None))
            return self._rewrite_update(attrs.evolve(request, action=kmock.action.UPDATE, data=data))
        if method == "PUT" and request.name:
            current = self._current(request)
            if current is None:
                raise kmock.KubernetesObjectNotFoundError()
            replacement = dict(request.data or {})
            if request.subresource == "status":
                replacement = dict(current, status=replacement.get("status"))
            return self._rewrite_update(attrs.evolve(request, action=kmock.action.UPDATE, data=replacement),
                                        replace=True)
        if request.action == kmock.action.CREATE:
            return self._rewrite_create(request)
        if request.action == kmock.action.UPDATE:
            return self._rewrite_update(request)
        return request

    def _rewrite_create(self, request: kmock.Request) -> kmock.Request:
        data = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        meta = data.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise kmock.KubernetesError(status=422, reason="Invalid", message="metadata.name: Required value")
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        info = self._info(request)
        if request.namespace:
            meta["namespace"] = request.namespace
        elif info is not None and info.namespaced:
            meta.setdefault("namespace", "default")
        if info is not None and info.kind:
            res = request.resource
            data.setdefault("apiVersion", f"{res.group}/{res.version}" if res.group else res.version)
            data.setdefault("kind", info.kind)
        meta.update(uid=new_uid(), creationTimestamp=now_rfc3339(), generation=1,
                    resourceVersion=str(next(self._versions)))
        meta.pop("deletionTimestamp", None)
        return attrs.evolve(request, data=data, namespace=meta.get("namespace"))

    def _rewrite_update(self, request: kmock.Request, *, replace: bool = False) -> kmock.Request:
        current = self._current(request)
        if current is None:
            return request  # kmock answers 404
        try:
            if replace:
                new = copy.deepcopy(request.data)
            elif isinstance(request.data, list):
                new = jsonpatch.apply_patch(copy.deepcopy(current), request.data)
            elif isinstance(request.data, dict):
                new = merge(current, request.data)
            else:
                raise ValueError("the patch body must be a JSON object or a JSON patch")
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, ValueError, TypeError) as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None
        info = self._info(request)
        if request.subresource == "status":
            new = dict(current, status=new.get("status"))
        elif info is not None and "status" in info.subresources and "status" in current:
            new["status"] = current["status"]
        elif info is not None and "status" in info.subresources:
            new.pop("status", None)
        meta = new.setdefault("metadata", {})
        old_meta = current.get("metadata", {})
        for key in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if key in old_meta:
                meta[key] = old_meta[key]
        if old_meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
        if new.get("spec") != current.get("spec"):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = str(next(self._versions))
        if new.get("status") is None:
            new.pop("status", None)
        # kmock applies a JSON patch as-is: replacing the root makes the stored object exactly `new`.
        return attrs.evolve(request, data=[{"op": "replace", "path": "", "value": new}])


def method_of(request: kmock.Request) -> str:
    return str(getattr(request.method, "value", request.method)).upper()


def merge(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch (also what strategic-merge patches of our flat fields need)."""
    result = dict(current)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        elif isinstance(value, Mapping):
            result[key] = merge({}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def new_uid() -> str:
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
