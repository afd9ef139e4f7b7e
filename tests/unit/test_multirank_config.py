"""Several ranks by configuration: the spec, the rendered launcher command, the trainer's DDP/FSDP arguments,
the launcher's exit codes and the single-process identities of align_trainer.distributed."""

from __future__ import annotations

from typing import Any

import pytest

from align_api import ManifestError, load_text, validate_document
from align_api.constants import ExitCode
from align_operator.renderers import render_job
from align_operator.renderers.service import RENDEZVOUS_PORT
from align_operator.settings import Settings
from align_trainer import distributed
from align_trainer.launch import exit_code

SETTINGS = Settings(trainer_image="registry.example/trainer:1.2.3")


def doc(**resources: Any) -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "demo"},
            "spec": {"algorithm": "dpo", "model": {"base": "builtin://tiny"}, "data": {"train": {"uri": "p.jsonl"}},
                     "resources": resources}}


def pod(**resources: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    job = render_job(validate_document(doc(**resources)), "team", SETTINGS)
    spec = job["spec"]["template"]["spec"]
    return spec, spec["containers"][0]


def test_two_cpu_nodes_render_gloo_ranks_through_the_launcher() -> None:
    spec, main = pod(nodes=2, gpusPerNode=0)
    assert main["command"] == ["python"]
    assert main["args"][:8] == ["-m", "align_trainer.launch", "--nproc-per-node=1", "--max-restarts=0",
                                "--nnodes=2", "--node-rank=$(NODE_RANK)", "--master-addr=demo-trainer-0.demo-trainer",
                                f"--master-port={RENDEZVOUS_PORT}"]
    assert main["args"][8:10] == ["-m", "align_trainer"]
    assert "resources" not in main and "tolerations" not in spec  # CPU: no nvidia.com/gpu
    assert {"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"} in main["ports"]
    grace = SETTINGS.termination_grace_seconds  # torchrun's SIGTERM -> SIGKILL wait follows the pod's grace period
    assert {"name": "TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "value": str(grace - 10)} in main["env"]
    assert pod(gpusPerNode=0)[1]["args"][:2] == ["-m", "align_trainer"]


def test_cpu_processes_per_node_is_torchrun_standalone_with_threads_shared() -> None:
    _, main = pod(gpusPerNode=0, processesPerNode=4, cpu="8")
    assert main["args"][:5] == ["-m", "align_trainer.launch", "--nproc-per-node=4", "--max-restarts=0", "--standalone"]
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in main["env"]
    _, one = pod(gpusPerNode=0, cpu="8")
    assert one["command"] == ["python"] and one["args"][:2] == ["-m", "align_trainer"]
    assert not [e for e in one["env"] if e["name"] == "OMP_NUM_THREADS"]


def test_gpu_ranks_are_one_per_gpu() -> None:
    _, main = pod(nodes=2, gpusPerNode=4)
    assert "--nproc-per-node=4" in main["args"] and main["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert not [e for e in main["env"] if e["name"] == "OMP_NUM_THREADS"]
    with pytest.raises(ManifestError, match="one rank per GPU"):
        load_text(__import__("yaml").safe_dump(doc(gpusPerNode=2, processesPerNode=3)))


def test_world_size_and_defaults() -> None:
    res = validate_document(doc(nodes=3, gpusPerNode=0, processesPerNode=2)).spec.resources
    assert (res.ranks_per_node, res.world_size, res.strategy, res.collective_timeout_seconds) == (2, 6, "ddp", 600)


def test_trainer_parallelism_ddp_on_cpu_and_fsdp_config() -> None:
    cpu = validate_document(doc(nodes=2, gpusPerNode=0, collectiveTimeoutSeconds=45)).spec.resources
    assert distributed.trainer_parallelism(cpu, "cpu") == {"ddp_timeout": 45, "ddp_backend": "gloo",
                                                            "ddp_find_unused_parameters": False}
    gpu = validate_document(doc(gpusPerNode=8, strategy="fsdp")).spec.resources
    args = distributed.trainer_parallelism(gpu, "cuda")
    assert args["ddp_backend"] == "nccl" and args["fsdp"] == "full_shard auto_wrap"
    assert args["fsdp_config"]["version"] == 2 and args["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"
    single = validate_document(doc(gpusPerNode=0)).spec.resources
    assert distributed.trainer_parallelism(single, "cpu") == {"ddp_timeout": 600}


def test_fsdp_args_build_transformers_fsdp_plugin() -> None:
    from transformers import TrainingArguments
    gpu = validate_document(doc(gpusPerNode=8, strategy="fsdp")).spec.resources
    kwargs = {k: v for k, v in distributed.trainer_parallelism(gpu, "cuda").items() if k.startswith("fsdp")}
    args = TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to="none", **kwargs)
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert args.fsdp_plugin_args["reshard_after_forward"] is True


@pytest.mark.parametrize("failures,code", [
    ({}, ExitCode.OK),
    ({1: (-9, 10.0)}, ExitCode.TRANSIENT),                                # kill -9: retry
    ({0: (1, 12.0), 1: (ExitCode.DATA_ERROR, 11.0)}, ExitCode.DATA_ERROR),  # a permanent cause wins
    ({0: (ExitCode.DATA_ERROR, 12.0), 1: (-15, 11.0)}, ExitCode.DATA_ERROR),
    ({0: (1, 11.0), 1: (-15, 12.0)}, ExitCode.TRANSIENT),
    ({0: (ExitCode.DIVERGED, 13.0), 1: (ExitCode.CONFIG_ERROR, 12.0)}, ExitCode.CONFIG_ERROR),  # the first one
])
def test_launcher_exit_code_keeps_the_root_cause(failures: dict[int, tuple[int, float]], code: int) -> None:
    assert exit_code(failures) == code


def test_single_process_identities() -> None:
    assert not distributed.is_distributed() and distributed.is_main()
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.mean_metrics({"loss": 1.5}) == {"loss": 1.5}
    assert distributed.gather([1, 2]) == [1, 2] and distributed.broadcast("x") == "x"
    assert distributed.shard(list(range(5))) == [0, 1, 2, 3, 4]


def test_shard_deals_out_and_seeds_differ_per_rank() -> None:
    rows = list(range(8))
    shards = [distributed.shard(rows, i, 2) for i in range(2)]
    assert shards == [[0, 2, 4, 6], [1, 3, 5, 7]] and sorted(shards[0] + shards[1]) == rows
    assert distributed.sampling_seed(42, 0, 0) == 42
    seeds = {distributed.sampling_seed(42, s, r) for s in (0, 5) for r in (0, 1)}
    assert len(seeds) == 4


def test_gradient_bytes_counts_trainable_parameters_only() -> None:
    import torch
    layer = torch.nn.Linear(4, 3)
    layer.bias.requires_grad_(False)
    assert distributed.gradient_bytes(layer) == 12 * 4
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    b.load_state_dict(a.state_dict())
    assert distributed.fingerprint(a) == distributed.fingerprint(b)
    with torch.no_grad():
        b.weight[0, 0] += 1e-3
    assert distributed.fingerprint(a) != distributed.fingerprint(b)
