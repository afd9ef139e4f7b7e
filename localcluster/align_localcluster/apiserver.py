"""An in-memory Kubernetes API server for the local cluster: kmock's KubernetesEmulator plus the API semantics
the operator, kubectl-style clients and the node agent rely on.

kmock stores JSON objects and streams watch events; it leaves the "special" fields to subclasses. Added here:
- what a write does to the object (writes.py): metadata on create, resourceVersion on every write (one global
  counter) and generation bumps on spec changes, so Kopf's JSON-patch `test` on resourceVersion works (a failed
  test answers 422, as a real server does); the status subresource; PUT (replace) and server-side apply;
- label and field selectors on list and watch; watches that cannot miss an event between the
  initial snapshot and the stream;
- background cascading deletion through ownerReferences (the garbage collector);
- bounded memory: object histories and request logs are trimmed;
- `pods/{name}/binding` and `pods/{name}/log` as a real server serves them (`nodeproxy.py`);
- validating admission webhooks registered by ValidatingWebhookConfigurations (`admission.py`), and `?dryRun=All`.
Error injection: `emulator.inject(503, times=3, method="POST", resource="jobs")` refuses requests before they act
(kmock's own reactions, `emulator[...] << ...`, still work but act after the state change, as kmock does).
"""

from __future__ import annotations

import collections
import copy
import itertools
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock

from . import admission, nodeproxy, openapi, tables
from .watches import RecordingBus, _in_scope, _selected, parse_selector
from .writes import WriteSemantics, method_of, now_rfc3339

#: Requests kept for kmock's assertions before older ones are dropped (long local-cluster runs).
MAX_REQUESTS_KEPT = 200

_NAMESPACES_PATH = re.compile(r"^/api/v1/namespaces(?:/([^/]+))?(?:/(status|finalize))?/?$")
_NS_PLACEHOLDER = "x-align-namespaces"
_WEBHOOK_CONFIGURATIONS = kmock.resource(admission.CONFIGURATIONS)
_DISCOVERY_PATH = re.compile(r"^/(api/v1|apis/[^/]+/[^/]+)/?$")


@dataclass
class Fault:
    """An injected API error: the next `times` matching requests are refused with `status`, unchanged."""

    status: int = 503
    times: int = 1
    method: str | None = None        # GET, POST, PATCH, DELETE, PUT; None = any
    resource: str | None = None      # plural ("jobs") or "group/version/plural"; None = any
    subresource: str | None = None   # "status"; None = any
    served: int = 0

    def matches(self, request: kmock.Request) -> bool:
        if self.served >= self.times:
            return False
        if self.method and method_of(request) != self.method.upper():
            return False
        if self.resource and request.resource is not None:
            res = request.resource
            full = f"{res.group}/{res.version}/{res.plural}".lstrip("/")
            if self.resource not in (res.plural, full):
                return False
        if self.subresource is not None and request.subresource != self.subresource:
            return False
        return request.resource is not None


_DIRECT = {kmock.action.LIST: "_serve_list", kmock.action.WATCH: "_serve_watch", kmock.action.FETCH: "_serve_fetch",
           kmock.action.CREATE: "_serve_create", kmock.action.UPDATE: "_serve_update",
           kmock.action.DELETE: "_serve_delete"}


@attrs.define(kw_only=True)
class _DirectRouting(kmock.RawHandler):
    """Serve the emulator's own reactions without kmock's request matching.

    kmock finds a reaction by re-filtering every request it has recorded, which is quadratic in the
    number of requests; a local cluster that runs for an hour or a benchmark with 500 jobs cannot afford it.
    While nobody has added reactions of their own, the action alone says which reaction serves."""

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        routes = getattr(self, "_routes", None)
        if routes and request.action in routes and request.resource is not None and request.resource.plural \
                and len(self._payloads) == len(self._builtin):
            return await routes[request.action].response(request)
        return await super()._handle(request)


@attrs.define(kw_only=True)
class ClusterEmulator(WriteSemantics, kmock.KubernetesEmulator, _DirectRouting):
    """kmock's KubernetesEmulator with the semantics listed in the module docstring."""

    _versions: itertools.count = attrs.field(factory=lambda: itertools.count(1), init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _builtin: frozenset[int] = attrs.field(factory=frozenset, init=False)
    _routes: dict[Any, Any] = attrs.field(factory=dict, init=False)
    _deletions_seen: int = attrs.field(default=0, init=False)
    #: Whether a ValidatingWebhookConfiguration was ever written (until then, writes skip admission).
    _webhooks_seen: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(lambda: RecordingBus(self._versions))
        self._builtin = frozenset(id(p) for p in self._payloads)
        by_name = {getattr(p.response.payload, "__name__", ""): p for p in self._payloads}
        self._routes = {action: by_name[name] for action, name in _DIRECT.items() if name in by_name}

    def inject(self, status: int = 503, *, times: int = 1, method: str | None = None,
               resource: str | None = None, subresource: str | None = None) -> Fault:
        """Refuse the next `times` matching requests with `status` (429, 500, 503, 409...) without acting."""
        fault = Fault(status=status, times=times, method=method, resource=resource, subresource=subresource)
        self._faults.append(fault)
        return fault

    # ----------------------------------------------------------------- request rewriting
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        request = self._namespace_paths(request)
        if request.resource is None:
            return await super()._handle(request)
        for fault in self._faults:
            if fault.matches(request):
                fault.served += 1
                return await self._render_error(kmock.KubernetesError(
                    status=fault.status, reason="Injected", message=f"injected {fault.status} for tests"))
        if request.subresource == "log" and request.name:
            return await nodeproxy.proxy_log(self, request)
        if request.subresource == "binding" and request.name and method_of(request) == "POST":
            request = nodeproxy.binding_update(self, request)
        original, request = request, self._rewrite(request)
        if request is not original:  # kmock finds reactions by request identity
            for index in range(len(self._requests) - 1, -1, -1):
                if self._requests[index] is original:
                    self._requests[index] = request
                    break
        if request.resource == _WEBHOOK_CONFIGURATIONS:
            self._webhooks_seen = True
        refused = await self._admit(original, request) if self._webhooks_seen else None
        if refused is not None:
            return await self._render_error(refused)
        if request.params.get("dryRun") and method_of(original) in ("POST", "PUT", "PATCH", "DELETE"):
            return await self._dry_run(request)
        try:
            return await super()._handle(request)
        finally:
            deletions = sum(bus.deletions for bus in self._buses.values())
            if deletions != self._deletions_seen:
                self._deletions_seen = deletions
                await self._collect_garbage()
            self._trim(request)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.startswith(openapi.INDEX_PATH):  # what kubectl apply asks before it sends
            doc = openapi.answer(raw_request.path, self.resources)
            return aiohttp.web.json_response(doc) if doc is not None else aiohttp.web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
                status=404)
        # kmock's path parser reads /api/v1/namespaces[/<name>] as a namespace prefix and fails; hand it a
        # path it parses, and turn the result back into the cluster-scoped namespaces resource in _handle.
        match = _NAMESPACES_PATH.match(raw_request.path)
        if match:
            tail = "".join(f"/{part}" for part in match.groups() if part)
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_path(f"/api/v1/{_NS_PLACEHOLDER}{tail}"))
        response = await super().__call__(raw_request)
        if _DISCOVERY_PATH.match(raw_request.path) and isinstance(response, aiohttp.web.Response) and response.body:
            doc = json.loads(bytes(response.body))  # type: ignore[arg-type]
            if doc.get("kind") == "APIResourceList":
                return aiohttp.web.json_response(discovery_as_served(doc), status=response.status)
        columns = _table_columns(raw_request)
        if columns is not None and isinstance(response, aiohttp.web.Response) and response.status == 200 \
                and response.body:
            return aiohttp.web.json_response(tables.as_table(json.loads(bytes(response.body)), columns))  # type: ignore[arg-type]
        return response

    async def _admit(self, original: kmock.Request, request: kmock.Request) -> kmock.KubernetesError | None:
        """Validating admission (admission.py) of the object a create or update would store."""
        if method_of(original) not in ("POST", "PUT", "PATCH"):
            return None
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            operation, new, old = "CREATE", request.data, None
        elif request.action == kmock.action.UPDATE and _replacement(request) is not None:
            operation, new, old = "UPDATE", _replacement(request), self._current(request)
        else:
            return None  # not a write of a whole object (kmock answers it: 404, ...)
        info = self._info(request)
        return await admission.review(self, request, operation, new, old, info.kind if info else None)

    async def _dry_run(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """`?dryRun=All`: the answer the write would get, with nothing stored (admission has run)."""
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            existing = self._lookup(request, from_body=True)
            if existing is not None and not existing.deleted:
                return await self._render_error(kmock.KubernetesError(
                    status=409, reason="AlreadyExists", message=f'"{request.data["metadata"]["name"]}" already exists'))
            return aiohttp.web.json_response(request.data, status=201)
        current = self._current(request)
        if current is None:
            return await self._render_error(kmock.KubernetesObjectNotFoundError())
        return aiohttp.web.json_response(_replacement(request) or current)

    def _namespace_paths(self, request: kmock.Request) -> kmock.Request:
        if request.resource is None or request.resource.plural != _NS_PLACEHOLDER:
            return request
        fixed = attrs.evolve(request, resource=kmock.resource("v1/namespaces"))
        for index in range(len(self._requests) - 1, -1, -1):
            if self._requests[index] is request:
                self._requests[index] = fixed
                break
        return fixed

    def _info(self, request: kmock.Request) -> kmock.ResourceInfo | None:
        return self.resources[request.resource] if request.resource in self.resources else None

    def _current(self, request: kmock.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key in self.objects and not self.objects[key].deleted:
            return self.objects[key].raw
        return None

    # ----------------------------------------------------------------- reads
    # kmock finds the one object of a request by scanning all objects; a dict lookup does the same in O(1).
    def _lookup(self, request: kmock.Request, *, from_body: bool = False) -> Any:
        namespace, name = request.namespace, request.name
        if from_body and isinstance(request.data, dict):
            meta = request.data.get("metadata") or {}
            namespace, name = namespace or meta.get("namespace"), name or meta.get("name")
        key = (request.resource, namespace, name)
        return self.objects._objects.get(key)

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        obj = self._lookup(request)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        return kmock.Response(status=201, payload=self._lookup(request, from_body=True).raw)  # 201 Created

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        return self._lookup(request).last.raw

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        return self._lookup(request).last.raw

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        result = await super()._serve_version(request)
        if isinstance(result, dict) and str(result.get("groupVersion", "")).startswith("/"):
            result["groupVersion"] = result["groupVersion"][1:]  # the core group is "v1", not "/v1"
        return result

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        result = await super()._serve_list(request)
        assert isinstance(result, dict)
        labels = parse_selector(request.params.get("labelSelector"))
        fields = parse_selector(request.params.get("fieldSelector"))
        result["items"] = [obj for obj in result["items"] if _selected(obj, labels, fields)]
        result["metadata"] = {"resourceVersion": str(next(self._versions))}
        result["kind"] = "List"
        result["apiVersion"] = "v1"
        return result

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        yield b""
        assert request.resource is not None
        labels = parse_selector(request.params.get("labelSelector"))
        fields = parse_selector(request.params.get("fieldSelector"))
        bus = self._buses[request.resource]
        since = str(request.params.get("resourceVersion") or "")
        async with self._lock:
            # Mark the bus before the snapshot, under the lock: no event falls between the two.
            mark = await bus.mark()
            history = bus.history
            if since.isdigit() and int(since) > 0 and (len(history) < (history.maxlen or 0)
                                                       or (history and history[0][0] <= int(since) + 1)):
                # Watching from a list's resourceVersion: what happened after it, no stale replays.
                snapshot = [event for version, event in history if version > int(since)]
            else:
                snapshot = [{"type": "ADDED", "object": obj.raw} for (res, ns, name), obj in self.objects.items()
                            if res == request.resource and not obj.deleted and _in_scope(request, ns, name)]
        try:
            for event in snapshot:
                raw = event["object"]
                meta = raw.get("metadata", {})
                if _in_scope(request, meta.get("namespace"), meta.get("name")) and _selected(raw, labels, fields):
                    yield event
            async for event in bus.stream(since=mark):
                raw = event.get("object", {})
                meta = raw.get("metadata", {})
                if _in_scope(request, meta.get("namespace"), meta.get("name")) and _selected(raw, labels, fields):
                    yield event
        finally:
            await bus.unmark(mark)

    # ----------------------------------------------------------------- garbage collection
    async def _collect_garbage(self) -> None:
        """Delete (or mark for deletion) every object whose owner no longer exists: background cascade."""
        while True:
            async with self._lock:
                alive = {obj.raw.get("metadata", {}).get("uid") for obj in self.objects.values() if not obj.deleted}
                orphans = [(key, obj) for key, obj in self.objects.items() if not obj.deleted
                           and any(ref.get("uid") not in alive
                                   for ref in obj.raw.get("metadata", {}).get("ownerReferences") or [])
                           and not obj.raw.get("metadata", {}).get("deletionTimestamp")]
                for (resource, _, _), obj in orphans:
                    if obj.raw.get("metadata", {}).get("finalizers"):
                        obj.patch({"metadata": {"deletionTimestamp": now_rfc3339(),
                                                "resourceVersion": str(next(self._versions))}})
                        await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
                    else:
                        raw = obj.raw
                        obj.delete()
                        await self._buses[resource].put({"type": "DELETED", "object": raw})
            if not orphans:
                return

    def _trim(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        if request.name and key in self.objects:
            obj = self.objects[key]
            if obj.deleted:
                del self.objects[key]
            elif len(obj.history) > 1:
                obj.history[:] = [obj.history[-1]]
        # Trim the request logs only while no test reactions are installed (their slices count requests).
        if len(self._payloads) == len(self._builtin):
            for holder in [self, *self._payloads]:
                if len(holder._requests) > MAX_REQUESTS_KEPT:
                    del holder._requests[: len(holder._requests) - MAX_REQUESTS_KEPT // 2]

    # ----------------------------------------------------------------- direct access (node agent, tests)
    def get_object(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        res = kmock.resource(resource)
        return [copy.deepcopy(obj.raw) for (r, ns, _), obj in list(self.objects.items())
                if r == res and not obj.deleted and (namespace is None or ns == namespace)]


_CUSTOM_PATH = re.compile(r"^/apis/([^/]+)/([^/]+)/(?:namespaces/[^/]+/)?([^/]+)(?:/[^/]+)?/?$")


def _table_columns(raw_request: aiohttp.web.BaseRequest) -> list[dict[str, Any]] | None:
    """The printer columns when kubectl asks for a Table of a custom resource we have a CRD for (not watches)."""
    if raw_request.method != "GET" or not tables.wants_table(raw_request.headers.get("Accept", "")) \
            or raw_request.query.get("watch") in ("true", "1"):
        return None
    match = _CUSTOM_PATH.match(raw_request.path)
    if not match:
        return None
    from align_api.crd import build_crd
    return tables.printer_columns(build_crd()).get((match.group(1), match.group(2), match.group(3)))


def _replacement(request: kmock.Request) -> dict[str, Any] | None:
    """The whole new object of an update as writes.py rewrites it (a JSON patch replacing the root), else None."""
    data = request.data
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and data[0].get("path") == "" \
            and data[0].get("op") == "replace":
        return data[0].get("value")
    return None


def discovery_as_served(doc: dict[str, Any]) -> dict[str, Any]:
    """A real server lists subresources without short names or categories (kmock copies them from the resource, and
    kubectl then warns that `aj` could also mean alignmentjobs/status)."""
    resources = []
    for entry in doc.get("resources", []):
        if "/" in entry.get("name", ""):
            entry = {k: v for k, v in entry.items() if k not in ("shortNames", "categories")} | {"singularName": ""}
        resources.append(entry)
    return {**doc, "resources": resources}
