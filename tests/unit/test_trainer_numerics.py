"""numerics.ResidualWatch on builtin://tiny: the overflow that pre-norm models turn into zeros instead of NaN,
the watch that sees it, and the metrics sink that stops the run on it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from align_trainer.errors import Diverged
from align_trainer.metrics import Metrics
from align_trainer.numerics import RESIDUAL_KEY, ResidualWatch, final_norm


def tiny(sequence_classifier: bool = False) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    from align_trainer import builtin
    torch.manual_seed(0)
    base = builtin.build_model("tiny")
    if sequence_classifier:
        from transformers import AutoModelForSequenceClassification
        base = AutoModelForSequenceClassification.from_pretrained(builtin.materialize("tiny"), num_labels=1)
    task = "SEQ_CLS" if sequence_classifier else "CAUSAL_LM"
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type=task))


def ids() -> Any:
    import torch
    return torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))


def test_final_norm_is_found_through_peft_for_lm_and_classifier() -> None:
    for classifier in (False, True):
        model = tiny(classifier)
        assert final_norm(model) is model.get_base_model().model.norm
    assert final_norm(object()) is None and ResidualWatch().attach(object()) is False


def test_watch_reports_the_peak_rms_of_the_final_norm_input_and_resets() -> None:
    import torch
    model, watch = tiny(), ResidualWatch()
    assert watch.attach(model) and watch.attach(model)
    assert len(final_norm(model)._forward_hooks) == 1  # a second attach adds no second hook
    assert watch.read() is None  # no forward pass yet
    captured: list[Any] = []
    handle = final_norm(model).register_forward_hook(lambda m, args, out: captured.append(args[0].detach()))
    with torch.no_grad():
        model(input_ids=ids())
        model(input_ids=ids()[:, :5] + 1)
    handle.remove()
    expected = max(h.pow(2).mean(-1).max().sqrt().item() for h in captured)
    assert watch.read() == pytest.approx(expected, rel=1e-6) and 0 < expected < 10
    assert watch.read() is None  # reset by the read


def test_residual_overflow_zeroes_the_logits_without_nan_and_the_watch_reads_inf() -> None:
    """What an absurd learning rate does to a pre-norm model (measured in tests/integration/test_divergence.py):
    a residual stream past sqrt(float32 max) makes RMSNorm's mean square inf, rsqrt(inf) = 0, and every logit 0.
    No NaN anywhere: only the watch sees it."""
    import torch
    model, watch = tiny(), ResidualWatch()
    watch.attach(model)
    with torch.no_grad():
        model.get_base_model().model.layers[-1].mlp.down_proj.weight.mul_(1e25)
        out = model(input_ids=ids(), labels=ids())
    assert torch.all(out.logits == 0) and math.isfinite(out.loss.item())
    assert out.loss.item() == pytest.approx(math.log(model.config.vocab_size), rel=1e-6)
    assert watch.read() == math.inf


def test_watch_keeps_a_nan() -> None:
    import torch
    model, watch = tiny(), ResidualWatch()
    watch.attach(model)
    with torch.no_grad():
        model(input_ids=ids())
        model.get_base_model().model.layers[-1].mlp.down_proj.weight.fill_(math.nan)
        model(input_ids=ids())
        model.get_base_model().model.layers[-1].mlp.down_proj.weight.fill_(0.0)
        model(input_ids=ids())  # a later finite peak must not hide the NaN
    assert math.isnan(watch.read())  # type: ignore[arg-type]


def test_metrics_log_records_the_peak_and_diverges_on_overflow(tmp_path: Path) -> None:
    import torch
    model = tiny()
    metrics = Metrics("job-n", tmp_path / "m.jsonl")
    metrics.watch(model)
    with torch.no_grad():
        model(input_ids=ids())
    metrics.log({"loss": 1.0}, step=1)
    assert 0 < metrics.latest[RESIDUAL_KEY] < 10
    metrics.log({"loss": 1.0}, step=2)  # no forward pass in between: nothing new to report
    with torch.no_grad():
        model(input_ids=ids())
    metrics.log({"eval_loss": 1.0}, step=2)  # an eval log's forward passes are eval numbers
    assert "eval_" + RESIDUAL_KEY in metrics.latest
    with torch.no_grad():
        model.get_base_model().model.layers[-1].mlp.down_proj.weight.mul_(1e25)
        model(input_ids=ids())
    with pytest.raises(Diverged, match=f"step 3: {RESIDUAL_KEY}=inf .*overflowed float32"):
        metrics.log({"loss": math.log(model.config.vocab_size), "grad_norm": 0.0}, step=3)
    assert (tmp_path / "m.jsonl").read_text().count("\n") == 4  # the bad value is recorded before stopping
