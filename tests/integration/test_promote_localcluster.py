"""spec.promote end to end on the emulated cluster with the real trainer (builtin://tiny): the operator publishes
the kept checkpoint through its promote Job once training has ended, an operator killed mid-promotion neither loses
nor duplicates it, retention keeps the promoted checkpoint, a step that is not kept is refused with the kept
ones, and a second job starts from the promoted adapter (job://name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from align_localcluster import LocalCluster
from align_operator.cli import _register, app

from .trainer_support import DATA

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SETTINGS = {"scrape_interval_seconds": 0.5, "status_interval_seconds": 1.0, "upstream_poll_seconds": 1.0}


def sft(name: str, steps: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": name},
            "spec": {"algorithm": "sft", "model": {"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16}},
                     "data": {"train": {"uri": f"file://{DATA / 'sft.openai.jsonl'}"}},
                     "hyperparameters": {"maxSteps": steps, "batchSize": 4, "maxLength": 96, "loggingSteps": 1},
                     "resources": {"gpusPerNode": 0}, "evaluation": {"enabled": False}, **spec}}


def conditions(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in job["status"].get("conditions", [])}


def promote_jobs(sb: LocalCluster) -> list[dict[str, Any]]:
    return sb.list("Job", labels="app.kubernetes.io/component=promote")


def test_promote_publishes_the_step_survives_a_restart_and_a_second_job_starts_from_it(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, gpus=0, operator="process", env={"OMP_NUM_THREADS": "1"}, settings=SETTINGS) as sb:
        # GitOps: the promotion is in the manifest from the start; keep: 1 would otherwise rotate step 4 away
        sb.apply(sft("src", 12, checkpoints={"everySteps": 2, "keep": 1, "volume": "ckpt"}, promote={"step": 4}))
        done = sb.wait("src", timeout=400)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        volume = next(sb.workdir.glob("**/volumes/*/ckpt/src"))
        assert sorted(int(p.name.split("-")[1]) for p in (volume / "checkpoints").glob("checkpoint-*")) == [4, 12]
        assert [c["step"] for c in done["status"]["checkpoints"]] == [4, 12]
        trained = load_file(str(volume / "final" / "adapter_model.safetensors"))
        # kill -9 while the promote Job runs: the restarted operator finds it and finishes the promotion
        sb.wait_for(lambda: promote_jobs(sb), timeout=60, message="the promote Job")
        sb.restart_operator()
        promoted = sb.wait_for(lambda: (j := sb.get("src")) and conditions(j).get("Promoted", {}).get("status")
                               == "True" and j, timeout=300, message="Promoted=True")
        status = promoted["status"]
        assert status["phase"] == "Succeeded"
        assert status["promotion"]["step"] == 4 and status["promotion"]["source"] == \
            "pvc://ckpt/src/checkpoints/checkpoint-4"
        assert status["artifacts"]["adapter"] == status["promotion"]["adapter"]
        assert len(promote_jobs(sb)) == 1                       # one promote Job, restart or not
        card = (volume / "final" / "README.md").read_text()
        assert "for 4 optimizer steps" in card and "Promoted checkpoint: step 4" in card
        published = load_file(str(volume / "final" / "adapter_model.safetensors"))
        assert {k: v.tolist() for k, v in published.items()} == {
            k: v.tolist() for k, v in load_file(str(volume / "checkpoints" / "checkpoint-4" /
                                                    "adapter_model.safetensors")).items()}
        assert any((published[k] != trained[k]).any() for k in published)
        sb.wait_for(lambda: [e for e in sb.events("src") if e["reason"] == "Promoted"], timeout=20,
                    message="the Promoted event")
        assert [e["reason"] for e in sb.events("src")].count("Promoted") == 1

        # a second job starts from the promoted adapter
        sb.apply(sft("next", 2, model={"base": "builtin://tiny", "adapter": {"r": 8, "alpha": 16,
                                                                             "init": "job://src"}}))
        follow = sb.wait("next", timeout=300)
        assert follow["status"]["phase"] == "Succeeded", follow["status"]
        assert follow["status"]["resolvedUris"] == {"job://src": status["promotion"]["adapter"]}
        logs = "".join(sb.logs(p["metadata"]["name"]) for p in sb.list("Pod", labels="align.dev/job=next"))
        assert "policy adapter initialised from job://src" in logs

        # a step that is not kept: alignctl refuses it naming the kept steps; set with kubectl, the condition says so
        _register()
        refused = CliRunner().invoke(app, ["promote", "src", "--step", "6", "--kubeconfig", str(sb.kubeconfig)])
        assert refused.exit_code != 0 and "spec.promote.step: no checkpoint at step 6; kept: 4, 12" in refused.output
        sb.patch("src", {"spec": {"promote": {"step": 6}}})
        failed = sb.wait_for(lambda: (j := sb.get("src")) and conditions(j)["Promoted"]["reason"]
                             == "PromoteStepNotFound" and j, timeout=30, message="PromoteStepNotFound")
        assert "kept: 4, 12" in conditions(failed)["Promoted"]["message"]
        assert failed["status"]["promotion"]["step"] == 4 and len(promote_jobs(sb)) == 1   # nothing else written
        assert (volume / "final" / "README.md").read_text() == card
