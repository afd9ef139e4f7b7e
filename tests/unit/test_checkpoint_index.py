"""The trainer's record of its kept checkpoints (align_trainer.checkpoint_index) and how it is exported."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import generate_latest

from align_trainer.checkpoint_index import index
from align_trainer.metrics import Metrics


def workdir(tmp_path: Path) -> tuple[Path, Path]:
    checkpoints = tmp_path / "checkpoints"
    for step in (4, 8):   # checkpoint-2 was rotated away
        (checkpoints / f"checkpoint-{step}").mkdir(parents=True)
    rows = [{"step": s, **{f"m{i}": i for i in range(9)}, "loss": 1.0 / s, "learning_rate": 0.1} for s in range(1, 10)]
    rows.insert(8, {"step": 8, "eval_loss": 0.7, "eval_winRate": 0.6})   # evaluation at checkpoint 8
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(r) for r in rows) + "\n{\"step\": 9, \"lo")   # a line cut by a kill
    return checkpoints, metrics


def test_each_kept_checkpoint_has_its_steps_metrics_and_its_evaluation(tmp_path: Path) -> None:
    records = index(*workdir(tmp_path))
    assert [r["step"] for r in records] == [4, 8]
    # the key metrics first (at most 8 a checkpoint), then the others in the order logged
    assert records[0]["metrics"] == {"loss": 0.25, "learning_rate": 0.1, **{f"m{i}": i for i in range(6)}}
    assert "evaluation" not in records[0]
    assert records[1]["metrics"]["loss"] == 0.125                     # step 8's, not step 9's
    assert records[1]["evaluation"] == {"eval_loss": 0.7, "eval_winrate": 0.6}
    assert records[1]["time"].endswith("Z")
    assert index(tmp_path / "none", None) == []


def test_exported_series_follow_the_kept_list(tmp_path: Path) -> None:
    sink = Metrics("j", None)
    records = index(*workdir(tmp_path))
    sink.checkpoints(records)
    text = generate_latest(sink.registry).decode()
    assert 'align_trainer_checkpoint{job="j",step="8"}' in text
    assert 'align_trainer_checkpoint_metric{job="j",name="eval_winrate",step="8"} 0.6' in text
    sink.checkpoints(records[1:])                                     # checkpoint-4 rotated away
    assert 'step="4"' not in generate_latest(sink.registry).decode()


def test_the_operator_reads_what_the_trainer_exports_into_status_and_events(tmp_path: Path) -> None:
    from align_operator.status.checkpoints import listed, parse_index
    from align_operator.status.exposition import parse
    from align_operator.status.milestones import milestones
    from align_operator.status.progress import parse_metrics

    sink = Metrics("j", None)
    sink.checkpoints(index(*workdir(tmp_path)))
    families = parse(generate_latest(sink.registry).decode())
    assert "checkpoint" not in parse_metrics(families) and "checkpoint_metric" not in parse_metrics(families)
    spec = {"checkpoints": {"volume": "ckpt"}}
    status = listed(parse_index(families), spec, "j")
    assert [c["step"] for c in status] == [4, 8]
    assert status[1]["uri"] == "pvc://ckpt/j/checkpoints/checkpoint-8"
    assert status[1]["metrics"]["loss"] == 0.125 and status[1]["evaluation"]["eval_winrate"] == 0.6
    assert "uri" not in listed(parse_index(families), {}, "j")[0]              # an emptyDir goes with the pod
    events = milestones({"checkpoints": status[:1]}, {"checkpoints": status})
    assert events == [("Normal", "CheckpointSaved",
                       "checkpoint at step 8: loss 0.125 (pvc://ckpt/j/checkpoints/checkpoint-8)")]
