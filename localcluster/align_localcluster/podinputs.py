"""What a pod is given, read over the API as a kubelet reads it: its volumes (configMap and secret volumes
written out, emptyDir per pod, a persistentVolumeClaim one directory per claim that outlives pods), its env
(values, Secret and ConfigMap references, fieldRefs), the headless Services its rendezvous names, the trainer
config's metrics port, and the local files that config names (bound read-only into a container).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from align_api import yamlio
from align_api.constants import CONFIG_FILE_NAME

from .kube import CONFIGMAPS, SECRETS, SERVICES, Client
from .podenv import field_value, rendezvous_services, secret_data, write_items


class PodInputs:
    """Mixin of Kubelet: needs its `client`, `workdir`, `node_name` and `extra_env`."""

    client: Client
    workdir: Path
    node_name: str
    extra_env: Mapping[str, str]

    async def _headless_services(self, argv: Sequence[str], namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
        """The headless Services that torchrun's --master-addr names (read over the API, as DNS would resolve)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for name in rendezvous_services(argv, namespace):
            service = await self.client.get_or_none(SERVICES, name, namespace)
            if service and (service.get("spec") or {}).get("clusterIP") == "None":
                found[(namespace, name)] = service
        return found

    async def _mount_volumes(self, pod: Mapping[str, Any], container: Mapping[str, Any],
                             poddir: Path) -> list[tuple[str, Path]]:
        ns = pod["metadata"]["namespace"]
        volumes: dict[str, Path] = {}
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                path = self.workdir / "volumes" / ns / volume["persistentVolumeClaim"]["claimName"]
            else:
                path = poddir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                obj = await self.client.get_or_none(CONFIGMAPS, volume["configMap"]["name"], ns)
                if obj is None:
                    raise LookupError(f'configmap "{volume["configMap"]["name"]}" not found')
                write_items(path, obj.get("data") or {}, volume["configMap"].get("items"))
            elif "secret" in volume:
                obj = await self.client.get_or_none(SECRETS, volume["secret"]["secretName"], ns)
                if obj is None:
                    raise LookupError(f'secret "{volume["secret"]["secretName"]}" not found')
                write_items(path, secret_data(obj) or {}, volume["secret"].get("items"))
            volumes[name] = path
        mounts = []
        for mount in container.get("volumeMounts") or []:
            local = volumes.get(mount["name"])
            if local is None:
                continue
            if mount.get("subPath"):
                local = local / mount["subPath"]
            mounts.append((mount["mountPath"].rstrip("/"), local))
            claim = next((v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
                          if v["name"] == mount["name"] and "persistentVolumeClaim" in v), None)
            if claim and Path(mount["mountPath"]).name == claim and not mount.get("subPath"):
                # Claims mounted as <root>/<claim> make <root> itself a place (e.g. $ALIGN_PVC_ROOT).
                mounts.append((str(Path(mount["mountPath"]).parent), local.parent))
        return sorted(dict(mounts).items(), key=lambda m: -len(m[0]))

    async def _env(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update(self.extra_env)
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = await self.client.get_or_none(SECRETS, ref["name"], ns)
                data = secret_data(secret) if secret else None
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    raise LookupError(f'secret "{ref["name"]}" not found' if data is None else
                                      f"couldn't find key {ref['key']} in Secret {ns}/{ref['name']}")
                env[item["name"]] = data[ref["key"]]
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                obj = await self.client.get_or_none(CONFIGMAPS, ref["name"], ns) or {}
                if ref["key"] in (obj.get("data") or {}):
                    env[item["name"]] = obj["data"][ref["key"]]
            elif "fieldRef" in source:
                env[item["name"]] = field_value(pod, source["fieldRef"]["fieldPath"], self.node_name)
        return env

    @staticmethod
    def _rewrite_config(mounts: list[tuple[str, Path]], port: int) -> None:
        """Point the trainer config at the local metrics port (several pods share one host here)."""
        for _, local in mounts:
            config = local / CONFIG_FILE_NAME
            if config.is_file():
                doc = yamlio.load(config.read_text()) or {}
                if isinstance(doc.get("spec"), dict):
                    doc["spec"].setdefault("metrics", {})["port"] = port
                    config.write_text(yaml.safe_dump(doc, sort_keys=False))


def host_paths(mounts: list[tuple[str, Path]]) -> list[Path]:
    """Directories of absolute local files the trainer config names (data, graders' files), to bind read-only."""
    found: set[Path] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            path = value[len("file://"):] if value.startswith("file:///") else value
            if path.startswith("/") and "\n" not in path and os.path.isfile(path):
                found.add(Path(path).parent)

    for _, local in mounts:
        config = local / CONFIG_FILE_NAME
        if config.is_file():
            walk(yaml.safe_load(config.read_text()) or {})
    return sorted(found)
