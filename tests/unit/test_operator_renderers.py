"""Pure renderer tests: one AlignmentJob in, the ConfigMap, Service and Job out."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from align_api import validate_document
from align_api.constants import CONFIG_MOUNT_PATH, ExitCode
from align_operator.renderers import (config_name, job_name, render_configmap, render_job, render_service,
                                      service_name)
from align_operator.renderers.job import CONTAINER, pvc_claims
from align_operator.settings import Settings

SETTINGS = Settings(trainer_image="registry.example/trainer:1.2.3")


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "algorithm": "dpo",
        "model": {"base": "Qwen/Qwen2.5-0.5B-Instruct"},
        "data": {"train": {"uri": "s3://bucket/pairs.jsonl"}},
    }
    for key, value in spec.items():
        base[key] = value
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob",
            "metadata": {"name": "demo", "namespace": "team"}, "spec": base}


def job_of(**spec: Any) -> dict[str, Any]:
    return render_job(validate_document(manifest(**spec)), "team", SETTINGS)


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_names_are_deterministic_and_bounded() -> None:
    assert job_name("demo") == "demo-trainer" and config_name("demo") == "demo-config"
    long = "a" * 63
    assert job_name(long) == job_name(long) and len(job_name(long)) <= 56
    assert len(service_name(long)) <= 63 and service_name(long).endswith("-trainer")
    assert job_name(long) != job_name("a" * 62 + "b")


def test_single_node_job() -> None:
    job = job_of(resources={"gpusPerNode": 1, "cpu": "8", "memory": "32Gi"})
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert job["metadata"] == {"name": "demo-trainer", "namespace": "team", "labels": job["metadata"]["labels"]}
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 1
    assert spec["backoffLimit"] == 3 and spec["suspend"] is False
    assert "activeDeadlineSeconds" not in spec and "ttlSecondsAfterFinished" not in spec
    assert pod["restartPolicy"] == "Never"
    main = container(job)
    assert main["image"] == "registry.example/trainer:1.2.3"
    assert main["command"] == ["python"]
    assert main["args"][:4] == ["-m", "align_trainer", "--config", f"{CONFIG_MOUNT_PATH}/job.yaml"]
    assert main["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["terminationGracePeriodSeconds"] == SETTINGS.termination_grace_seconds


def test_pod_failure_policy_fails_fast_on_permanent_codes_and_ignores_disruptions() -> None:
    rules = job_of()["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                                                             "values": sorted(ExitCode.PERMANENT)}}
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"


def test_multi_node_uses_torchrun_with_rendezvous_on_rank_zero() -> None:
    job = job_of(resources={"nodes": 4, "gpusPerNode": 8})
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    main = container(job)
    assert main["command"] == ["python"] and main["args"][:2] == ["-m", "align_trainer.launch"]  # torchrun + exit codes
    assert "--nnodes=4" in main["args"] and "--nproc-per-node=8" in main["args"]
    assert "--node-rank=$(NODE_RANK)" in main["args"]
    assert "--master-addr=demo-trainer-0.demo-trainer" in main["args"]
    assert main["args"][-6:-2] == ["-m", "align_trainer", "--config", f"{CONFIG_MOUNT_PATH}/job.yaml"]
    assert job["spec"]["template"]["spec"]["subdomain"] == "demo-trainer"
    assert {"name": "NODE_RANK", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}} in main["env"]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_single_node_several_gpus_is_torchrun_standalone() -> None:
    main = container(job_of(resources={"gpusPerNode": 2}))
    assert main["args"][:2] == ["-m", "align_trainer.launch"]
    assert "--standalone" in main["args"] and "--nproc-per-node=2" in main["args"]


def test_cpu_job_has_no_gpu_limits_or_tolerations() -> None:
    job = job_of(resources={"gpusPerNode": 0})
    assert "resources" not in container(job)
    assert "tolerations" not in job["spec"]["template"]["spec"]


def test_suspend_deadline_ttl() -> None:
    job = job_of(runPolicy={"suspend": True, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 600,
                            "backoffLimit": 0})
    assert job["spec"]["suspend"] is True
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["backoffLimit"] == 0


def test_kueue_queue_label_and_created_suspended() -> None:
    job = job_of(runPolicy={"queueName": "gpu-a100"})
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-a100"
    assert job["spec"]["suspend"] is True  # Kueue admits by unsuspending
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]


def test_secrets_are_references_only() -> None:
    job = job_of(secrets={"huggingFaceToken": {"name": "hf", "key": "token"},
                          "storageCredentials": {"accessKeyId": {"name": "s3", "key": "id"},
                                                 "secretAccessKey": {"name": "s3", "key": "secret"},
                                                 "endpointUrl": "http://minio:9000", "region": "eu-1"},
                          "judgeApiKey": {"name": "judge", "key": "api-key"}})
    env = {e["name"]: e for e in container(job)["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "id"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "secret"}
    assert env["ALIGN_JUDGE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "judge", "key": "api-key"}
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio:9000"  # an endpoint is not a secret
    for name in ("HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ALIGN_JUDGE_API_KEY"):
        assert "value" not in env[name]


def test_literal_secret_values_never_reach_the_job() -> None:
    with pytest.raises(Exception):
        job_of(secrets={"huggingFaceToken": "hf_literal_token"})


def test_restricted_security_context() -> None:
    job = job_of()
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container(job)["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True and ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container(job)["volumeMounts"]}
    assert {"/tmp", "/dev/shm", "/workspace", CONFIG_MOUNT_PATH} <= mounts  # writable places exist
    # Relative paths (./runs/<name> when spec.output.uri uploads) land on the scratch volume, not the image.
    assert container(job)["workingDir"] == "/workspace" and "/workspace" in mounts


def test_volumes_shm_checkpoint_emptydir_and_metrics_annotations() -> None:
    job = job_of(resources={"shmSize": "16Gi"}, checkpoints={"size": "50Gi"}, metrics={"port": 9500})
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert volumes["work"]["emptyDir"] == {"sizeLimit": "50Gi"}
    assert volumes["config"]["configMap"]["name"] == "demo-config"
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9500"
    assert container(job)["ports"][0] == {"name": "metrics", "containerPort": 9500, "protocol": "TCP"}
    assert container(job)["args"][-2:] == ["--output", "/workspace/output"]


def test_checkpoint_pvc_and_pvc_uris_are_mounted_under_the_pvc_root() -> None:
    job = job_of(checkpoints={"volume": "ckpt"}, model={"base": "pvc://models/qwen"})
    assert pvc_claims(validate_document(manifest(checkpoints={"volume": "ckpt"},
                                                 model={"base": "pvc://models/qwen"}))) == ["models", "ckpt"]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v}
    assert claims == {"models", "ckpt"}
    mounts = {m["mountPath"] for m in container(job)["volumeMounts"]}
    assert {"/mnt/pvc/models", "/mnt/pvc/ckpt"} <= mounts
    assert container(job)["args"][-2:] == ["--output", "/mnt/pvc/ckpt/demo"]


def test_output_uri_means_no_output_override() -> None:
    assert "--output" not in container(job_of(output={"uri": "s3://bucket/out"}))["args"]


def test_resolved_upstream_uris_are_passed_as_json() -> None:
    job = render_job(validate_document(manifest(model={"base": "builtin://tiny", "adapter": {"init": "job://sft"}})),
                     "team", SETTINGS, {"job://sft": "s3://bucket/sft/final"})
    env = {e["name"]: e for e in container(job)["env"]}
    assert json.loads(env["ALIGN_RESOLVED_URIS"]["value"]) == {"job://sft": "s3://bucket/sft/final"}
    on_claim = render_job(validate_document(manifest(model={"base": "builtin://tiny", "adapter": {"init": "job://sft"}})),
                          "team", SETTINGS, {"job://sft": "pvc://shared/sft/final"})
    assert "/mnt/pvc/shared" in {m["mountPath"] for m in container(on_claim)["volumeMounts"]}


def test_scheduling_fields() -> None:
    job = job_of(resources={"gpuType": "NVIDIA-A100-SXM4-80GB", "nodeSelector": {"pool": "train"},
                            "priorityClassName": "high",
                            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                                             "effect": "NoSchedule"}]})
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "train", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["priorityClassName"] == "high"
    assert pod["tolerations"][0]["key"] == "dedicated"


def test_image_override_from_spec() -> None:
    assert container(job_of(resources={"image": "mirror.local/trainer:dev"}))["image"] == "mirror.local/trainer:dev"


def test_configmap_holds_the_resolved_manifest() -> None:
    cm = render_configmap(validate_document(manifest()), "team")
    assert cm["metadata"]["name"] == "demo-config" and cm["metadata"]["namespace"] == "team"
    doc = yaml.safe_load(cm["data"]["job.yaml"])
    assert doc["kind"] == "AlignmentJob" and "status" not in doc
    assert doc["spec"]["hyperparameters"]["beta"] == 0.1  # defaults resolved for the trainer
    assert validate_document(doc).spec.algorithm == "dpo"  # and it validates again unchanged


def test_headless_service() -> None:
    svc = render_service(validate_document(manifest(metrics={"port": 9500})), "team")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"]["align.dev/job"] == "demo"
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"rendezvous": 29500, "metrics": 9500}


def test_children_carry_the_selector_labels() -> None:
    job = job_of()
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        assert labels["align.dev/job"] == "demo"
        assert labels["app.kubernetes.io/managed-by"] == "align-operator"
