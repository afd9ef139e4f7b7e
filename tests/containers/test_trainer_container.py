"""The trainer image, built here from trainer_image/Dockerfile, runs a pod exactly as the operator renders it.

The pod comes from the operator's own renderers (ConfigMap + Job for examples/dpo.yaml); its container runs with
podman (runc) as the pod says: the image's entrypoint replaced by the rendered command, the config mounted at the
rendered path, the UID the chart sets, a read-only root filesystem, the emptyDir volumes writable. Drift between
the image and the renderer (entrypoint, mount paths, UID, a package missing from the image) fails here.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from align_api import AlignmentJob
from align_api.validate import load_file
from align_operator.cli.local_cmd import absolutize
from align_operator.renderers import render_configmap, render_job
from align_localcluster.containers import Mount, podman_env, podman_run_argv
from align_localcluster.kubelet import free_port
from align_operator.settings import Settings
from tests.containers.conftest import TRAINER_IMAGE

pytestmark = [pytest.mark.containers, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _pod_for(manifest: Path, overrides: dict[str, Any], image: str) -> tuple[Any, dict, dict, dict[str, str]]:
    """(job, pod spec, container, ConfigMap data) exactly as the operator renders them."""
    load_file(manifest)  # the manifest as shipped is valid
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"] = absolutize(doc["spec"], manifest.parent)
    for key, value in overrides.items():
        doc["spec"][key] = {**doc["spec"].get(key, {}), **value}
    job = AlignmentJob.model_validate(doc)
    settings = Settings(trainer_image=image)
    rendered = render_job(job, "default", settings)
    pod = rendered["spec"]["template"]["spec"]
    return job, pod, pod["containers"][0], render_configmap(job, "default")["data"]


def _prepare(tmp: Path, pod: dict, container: dict, config: dict[str, str], metrics_port: int
             ) -> tuple[list[Mount], dict[str, Path]]:
    """Host directories for the pod's volumes, owned as fsGroup makes them on a node."""
    uid = pod["securityContext"]["runAsUser"]
    gid = pod["securityContext"]["fsGroup"]
    dirs: dict[str, Path] = {}
    for volume in pod["volumes"]:
        path = tmp / "volumes" / volume["name"]
        path.mkdir(parents=True)
        if "configMap" in volume:
            for key, text in config.items():
                doc = yaml.safe_load(text)
                doc["spec"].setdefault("metrics", {})["port"] = metrics_port
                (path / key).write_text(yaml.safe_dump(doc, sort_keys=False))
        else:
            import os
            os.chown(path, uid, gid)
        dirs[volume["name"]] = path
    mounts = [Mount(m["mountPath"], dirs[m["name"]], bool(m.get("readOnly"))) for m in container["volumeMounts"]]
    # The manifest's data files, read-only at the same absolute path (a PVC or an image layer on a cluster).
    mounts.append(Mount(str(REPO / "examples" / "data"), REPO / "examples" / "data", True))
    return mounts, dirs


def _env(container: dict) -> dict[str, str]:
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = {"metadata.namespace": "default"}.get(item["valueFrom"]["fieldRef"]["fieldPath"], "0")
    return env


def _start(tmp: Path, manifest: Path, overrides: dict[str, Any]) -> tuple[subprocess.Popen, dict[str, Path], int, Path]:
    job, pod, container, config = _pod_for(manifest, overrides, TRAINER_IMAGE)
    port = free_port()
    mounts, dirs = _prepare(tmp, pod, container, config, port)
    termination = tmp / "termination-log"
    termination.write_text("")
    termination.chmod(0o666)
    name = f"align-test-{tmp.name[-12:].lower().replace('_', '-')}-{port}"
    argv = podman_run_argv(name=name, image=TRAINER_IMAGE, container=container, pod_spec=pod, env=_env(container),
                           mounts=mounts, termination_log=termination)
    log = (tmp / "log.txt").open("wb")
    proc = subprocess.Popen(argv, env=podman_env(), stdout=log, stderr=subprocess.STDOUT)
    return proc, dirs, port, termination


def _log(tmp: Path) -> str:
    return (tmp / "log.txt").read_text(errors="replace")[-4000:]


def test_rendered_pod_trains_dpo_in_the_trainer_image(trainer_image: str, tmp_path: Path) -> None:
    # The quickstart job as shipped, evaluation gate included.
    proc, dirs, port, termination = _start(tmp_path, REPO / "examples" / "dpo.yaml", {})
    scraped = ""
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            if "align_trainer_up" in text:
                scraped = text
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    assert proc.wait(timeout=30) == 0, _log(tmp_path)
    assert "align_trainer_up" in scraped, "the trainer's /metrics never answered from inside the container"
    output = dirs["work"] / "output"
    adapters = list(output.rglob("adapter_model.safetensors"))
    assert adapters, f"no adapter under the work volume: {sorted(p.name for p in output.rglob('*'))}\n{_log(tmp_path)}"
    assert all(p.stat().st_uid == 1000 for p in adapters), "files are written as the chart's UID"
    assert termination.read_text().strip(), "the success termination message lands in /dev/termination-log"


def test_sigterm_inside_the_container_saves_a_checkpoint(trainer_image: str, tmp_path: Path) -> None:
    # spec.output.uri set: the trainer still works on the work volume ($ALIGN_OUTPUT_DIR; the root is read-only).
    proc, dirs, port, _ = _start(tmp_path, REPO / "examples" / "dpo.yaml",
                                 {"hyperparameters": {"maxSteps": 400, "epochs": 50},
                                  "output": {"uri": "file:///tmp/published"}})
    deadline = time.monotonic() + 600
    step = 0.0
    while proc.poll() is None and time.monotonic() < deadline and step < 2:
        try:
            for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text.splitlines():
                if line.startswith("align_trainer_step{"):
                    step = float(line.split()[-1])
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    assert proc.poll() is None, _log(tmp_path)
    proc.send_signal(signal.SIGTERM)  # podman run proxies it to the container's PID 1, as the kubelet's stop does
    code = proc.wait(timeout=120)
    assert code == 1, f"SIGTERM exits with the retryable code 1, got {code}\n{_log(tmp_path)}"
    checkpoints = list(dirs["work"].rglob("checkpoint-*"))
    assert checkpoints, f"no checkpoint after SIGTERM\n{_log(tmp_path)}"
