"""The local cluster node agent's stand-in for cluster DNS: a pod name under a headless Service reaches rank 0."""

from __future__ import annotations

from typing import Any

from align_localcluster.kubelet import rendezvous_argv

HEADLESS = {"spec": {"clusterIP": "None", "ports": [{"name": "rendezvous", "port": 29500}, {"name": "metrics", "port": 9400}]}}


def services(namespace: str, name: str) -> dict[str, Any] | None:
    return HEADLESS if (namespace, name) == ("team", "demo-trainer") else None


ARGV = ["python", "-m", "align_trainer.launch", "--nnodes=2", "--master-addr=demo-trainer-0.demo-trainer",
        "--master-port=29500", "-m", "align_trainer"]


def test_rank_zero_pod_name_and_port_map_to_one_local_address_per_job() -> None:
    ports: dict[tuple[str, str, int], int] = {}
    first = rendezvous_argv(ARGV, "team", services, ports)
    second = rendezvous_argv(ARGV, "team", services, ports)  # the other pod of the job
    assert first[4] == "--master-addr=127.0.0.1"
    assert first[5] == second[5] != "--master-port=29500"  # one free port, shared by the job's pods
    assert list(ports) == [("team", "demo-trainer", 29500)]
    assert first[:4] == ARGV[:4] and first[6:] == ARGV[6:]


def test_fully_qualified_names_resolve_and_unknown_names_are_left_alone() -> None:
    ports: dict[tuple[str, str, int], int] = {}
    fqdn = [a.replace("demo-trainer-0.demo-trainer", "demo-trainer-0.demo-trainer.team.svc.cluster.local") for a in ARGV]
    assert rendezvous_argv(fqdn, "team", services, ports)[4] == "--master-addr=127.0.0.1"
    other_ns = [a.replace("demo-trainer-0.demo-trainer", "demo-trainer-0.demo-trainer.prod.svc") for a in ARGV]
    assert rendezvous_argv(other_ns, "team", services, {}) == other_ns  # not this namespace's Service
    assert rendezvous_argv(ARGV, "elsewhere", services, {}) == ARGV    # no such Service: DNS would fail too
