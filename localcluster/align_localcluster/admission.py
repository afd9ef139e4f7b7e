"""Validating admission webhooks in the emulated API server, called as kube-apiserver calls them.

A ValidatingWebhookConfiguration stored in the emulator (admissionregistration.k8s.io/v1) takes effect as on a
cluster: every CREATE or UPDATE of a resource its rules match is sent, as the full object the write would store
(and the stored one for an UPDATE), in an AdmissionReview (admission.k8s.io/v1) to each matching webhook's
`clientConfig.url`, over HTTPS verified against its `caBundle`, within its `timeoutSeconds`. A refusal fails the
write with the webhook's code and `admission webhook "<name>" denied the request: <message>`, kube-apiserver's
words; a webhook that cannot be called fails the write under `failurePolicy: Fail` and is skipped under `Ignore`.
Writes to subresources (`status`) are checked only by rules that name them (`alignmentjobs/status`), as on a
cluster. Not emulated: `clientConfig.service` (no Service routing here: such a webhook counts as unreachable),
`namespaceSelector`/`objectSelector` beyond `matchLabels`, mutating webhooks, DELETE and CONNECT.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import kmock

#: Where the emulator keeps the configurations (the resource as cluster.RESOURCES names it).
CONFIGURATIONS = "admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


def rule_matches(rule: Mapping[str, Any], operation: str, group: str, version: str, resource: str) -> bool:
    """A RuleWithOperations, with kube-apiserver's wildcards: `resource` is `plural` or `plural/subresource`;
    `*` is every resource (no subresources), `pods/*` every subresource of pods, `*/*` everything."""
    def among(values: Any, value: str) -> bool:
        return "*" in (values or []) or value in (values or [])

    plural, _, sub = resource.partition("/")

    def matches(pattern: str) -> bool:
        head, slash, tail = pattern.partition("/")
        if pattern == "*/*":
            return True
        if not slash:
            return head in ("*", plural) and not sub
        return head in ("*", plural) and tail in ("*", sub) and bool(sub)

    return among(rule.get("operations"), operation) and among(rule.get("apiGroups"), group) \
        and among(rule.get("apiVersions"), version) and any(matches(p) for p in rule.get("resources") or [])


def _labels_match(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in ((selector or {}).get("matchLabels") or {}).items())


def review_request(request: kmock.Request, operation: str, new: Any, old: Any, kind: str | None) -> dict[str, Any]:
    """The AdmissionReview kube-apiserver sends for this write."""
    res = request.resource
    assert res is not None
    resource = {"group": res.group or "", "version": res.version or "", "resource": res.plural or ""}
    meta = (new or old or {}).get("metadata") or {}
    body: dict[str, Any] = {
        "uid": str(uuid.uuid4()), "kind": {"group": res.group or "", "version": res.version or "", "kind": kind or ""},
        "resource": resource, "requestKind": None, "requestResource": None,
        "name": meta.get("name") or request.name or "", "namespace": meta.get("namespace") or request.namespace,
        "operation": operation, "userInfo": {"username": "system:admin", "groups": ["system:masters"]},
        "object": new, "oldObject": old, "dryRun": bool(request.params.get("dryRun")),
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.title()}Options"},
    }
    body["requestKind"], body["requestResource"] = body["kind"], resource
    if request.subresource:
        body["subResource"] = request.subresource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body}


async def _call(hook: Mapping[str, Any], review: dict[str, Any]) -> dict[str, Any]:
    """POST the review to the webhook; its `response` object. Raises on anything a server would not accept."""
    client = hook.get("clientConfig") or {}
    url = client.get("url")
    if not url:
        raise RuntimeError("clientConfig.service is not routable here (no kube-proxy): use clientConfig.url")
    context: ssl.SSLContext | bool = False
    if url.startswith("https://"):
        ca = base64.b64decode(client["caBundle"]).decode() if client.get("caBundle") else None
        context = ssl.create_default_context(cadata=ca)
    timeout = aiohttp.ClientTimeout(total=float(hook.get("timeoutSeconds") or 10))
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.post(url, json=review, ssl=context) as answer:
            if answer.status != 200:
                raise RuntimeError(f"the server responded with {answer.status}")
            doc = await answer.json(content_type=None)
    response = (doc or {}).get("response")
    if not isinstance(response, dict) or response.get("uid") != review["request"]["uid"]:
        raise RuntimeError("expected a response with the request's uid")
    return response


async def review(emulator: Any, request: kmock.Request, operation: str, new: Any, old: Any,
                 kind: str | None) -> kmock.KubernetesError | None:
    """Ask every matching validating webhook; the error that fails the write, or None to go on."""
    res = request.resource
    if res is None or operation not in ("CREATE", "UPDATE"):
        return None
    resource = f"{res.plural}/{request.subresource}" if request.subresource else str(res.plural)
    namespace = ((new or old or {}).get("metadata") or {}).get("namespace") or request.namespace
    ns_labels = ((emulator.get_object("v1/namespaces", None, namespace) or {}).get("metadata") or {}).get("labels") \
        if namespace else {}
    obj_labels = ((new or old or {}).get("metadata") or {}).get("labels") or {}
    for config in emulator.list_objects(CONFIGURATIONS):
        for hook in config.get("webhooks") or []:
            if not any(rule_matches(rule, operation, res.group or "", res.version or "", resource)
                       for rule in hook.get("rules") or []):
                continue
            if not _labels_match(hook.get("namespaceSelector"), ns_labels or {}) \
                    or not _labels_match(hook.get("objectSelector"), obj_labels):
                continue
            name = hook.get("name", "")
            try:
                response = await _call(hook, review_request(request, operation, new, old, kind))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, RuntimeError, ValueError, KeyError) as exc:
                if hook.get("failurePolicy", "Fail") == "Ignore":
                    continue
                return kmock.KubernetesError(status=500, reason="InternalError",
                                             message=f'Internal error occurred: failed calling webhook "{name}": '
                                                     f"{exc or type(exc).__name__}")
            if not response.get("allowed"):
                status = response.get("status") or {}
                code = int(status.get("code") or 400)
                reason = status.get("reason") or {400: "BadRequest", 403: "Forbidden", 422: "Invalid"}.get(code, "")
                return kmock.KubernetesError(status=code, reason=reason,
                                             message=f'admission webhook "{name}" denied the request: '
                                                     f'{status.get("message") or "without explanation"}')
    return None
