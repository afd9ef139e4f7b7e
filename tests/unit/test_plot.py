"""alignctl plot DIR: a PNG and a sparkline summary from metrics.jsonl, tolerant of missing keys and NaN."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from typer.testing import CliRunner

from align_operator.cli import _register, app
from align_operator.metrics_plot import NAN_MARK, panels, read_metrics, sparkline

_register()  # every alignctl command, as the console script loads them


def write_dpo_run(run: Path, steps: int = 40) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(1, steps + 1):
        record = {"time": 1000.0 + step, "step": step, "epoch": step / steps,
                  "loss": 0.693 * math.exp(-step / 25) + 0.05 * math.sin(step),
                  "learning_rate": 1e-4 * (1 - step / steps), "grad_norm": 1.0 + 0.1 * step,
                  "rewards/margins": 0.02 * step, "rewards/accuracies": min(1.0, 0.5 + step / 80),
                  "tokens_per_second": 900 + 10 * step}
        if step % 7 == 0:
            del record["tokens_per_second"]  # algorithms do not log every key every step
        if step == 33:
            record["grad_norm"] = float("nan")
        lines.append(json.dumps(record))
        if step % 10 == 0:
            lines.append(json.dumps({"step": step, "eval_loss": 0.7 - step / 100, "eval_rewards/margins": step / 60}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 41, "loss": 0.1')  # torn last line
    return run


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_dir_writes_a_png_and_prints_sparklines(tmp_path: Path) -> None:
    run = write_dpo_run(tmp_path / "runs" / "dpo-demo")
    result = CliRunner().invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    width, height = png_size(run / "metrics.png")
    assert width >= 1200 and height >= 800  # a 3x2 grid at 150 dpi
    for key in ("loss", "eval_loss", "rewards/margins", "rewards/accuracies", "learning_rate", "tokens_per_second"):
        assert key in result.stdout, key
    assert any(ch in result.stdout for ch in "▁▂▃▄▅▆▇█")
    assert NAN_MARK in result.stdout  # the NaN grad norm is visible, not smoothed away
    assert "skipped 1 unreadable line" in result.stderr


def test_panels_pick_what_the_algorithm_logged(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps({"step": s, "reward": s / 10, "kl": 0.01 * s, "learning_rate": 1e-5})
                              for s in range(1, 6)))
    titles = [title for title, _, _ in panels(read_metrics(path).records)]
    assert titles == ["Reward", "KL to reference", "Learning rate"]
    out = tmp_path / "grpo.png"
    result = CliRunner().invoke(app, ["plot", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert png_size(out)[0] > 0


def test_sparkline_scales_and_marks_non_finite() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0, float("nan"), 3.0]) == f"▁{NAN_MARK}█"
    assert len(sparkline(list(range(1000)), width=20)) == 20
    assert sparkline([]) == ""


def test_plot_fails_without_metrics(tmp_path: Path) -> None:
    empty = CliRunner().invoke(app, ["plot", str(tmp_path)])
    assert empty.exit_code == 1 and "no metrics.jsonl" in empty.stderr
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "something_else": 3}) + "\n")
    nothing = CliRunner().invoke(app, ["plot", str(tmp_path)])
    assert nothing.exit_code == 1 and "no plottable metrics" in nothing.stderr


def test_plot_title_names_the_job_from_the_trainers_status_file(tmp_path: Path) -> None:
    from align_operator.cli.plot_cmd import _run_title

    run = write_dpo_run(tmp_path / "output")
    assert _run_title(run) == "output"  # no status.json: the directory's name
    (run / "status.json").write_text('{"job": "dpo-tiny", "step": 16}')
    assert _run_title(run) == "dpo-tiny"
    (run / "status.json").write_text("not json")
    assert _run_title(run) == "output"
