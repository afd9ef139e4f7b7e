"""The reference policy, all three kinds, and the policy adapter's initialisation from a saved adapter.

Reference log-probs as TRL's DPOTrainer computes them are compared with an independent forward pass of
the model the spec names: the bare base (kind=base, precomputed) or base + the reference adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from align_api.constants import ExitCode
from align_api.hyperparameters import Hyperparameters
from align_api.model import ModelSpec
from align_trainer.data import load_for
from align_api.data import DataSpec
from align_trainer.main import run
from align_trainer.models import REFERENCE_ADAPTER, Models, choose_device
from align_trainer.runtime import DataKind

from .trainer_support import DATA, manifest, read_metrics

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.usefixtures("single_torch_thread")]


def models_for(tmp_path: Path, **model: Any) -> Models:
    spec = ModelSpec.model_validate({"base": "builtin://tiny", "adapter": {"r": 4, "alpha": 8, "dropout": 0.0}, **model})
    device = choose_device(spec, Hyperparameters(), gpus=0, cuda=False, bf16_supported=False)
    return Models(spec, device, base_dir=tmp_path, cache_dir=tmp_path / "cache")


def randomize_lora(model: Any, seed: int) -> None:
    """LoRA B starts at zero (adapter == base); make it matter so base and adapter differ measurably."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name and f".{REFERENCE_ADAPTER}." not in name:  # never touch the frozen reference
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def saved_adapter(tmp_path: Path, name: str, seed: int) -> Path:
    models = models_for(tmp_path)
    policy = models.policy()
    randomize_lora(policy, seed)
    policy.save_pretrained(str(tmp_path / name))
    return tmp_path / name


def pairs() -> Any:
    spec = DataSpec.model_validate({"train": {"uri": str(DATA / "preference.openai.eval.jsonl"), "maxSamples": 4}})
    train, _ = load_for(DataKind.PREFERENCE, spec, base_dir=DATA, cache_dir=DATA, seed=0)
    return train


def dpo_trainer(tmp_path: Path, models: Models, *, precompute: bool = False) -> Any:
    from trl import DPOConfig, DPOTrainer
    args = DPOConfig(output_dir=str(tmp_path / "ckpt"), report_to="none", use_cpu=True, bf16=False, max_length=96,
                     per_device_train_batch_size=4, precompute_ref_log_probs=precompute)
    trainer = DPOTrainer(model=models.policy(), args=args, train_dataset=pairs(), processing_class=models.tokenizer())
    models.bind_reference(trainer.model)
    randomize_lora(trainer.model, seed=0)  # as if trained for a while: the policy now differs from the base
    return trainer


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum_t log p(y_t | y_<t) over completion tokens: the independent computation."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    token_logps = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (token_logps * batch["completion_mask"][:, 1:]).sum(-1)


def first_batch(trainer: Any) -> dict[str, torch.Tensor]:
    return next(iter(trainer.get_train_dataloader()))


def trl_reference_logps(trainer: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    return torch.cat([chosen, rejected])


def test_reference_base_is_the_base_with_adapters_disabled(tmp_path: Path) -> None:
    models = models_for(tmp_path)
    trainer = dpo_trainer(tmp_path, models)
    assert REFERENCE_ADAPTER not in trainer.model.peft_config  # TRL's copy of the policy was removed
    batch = first_batch(trainer)
    expected = sequence_logps(models.base(), batch)
    assert torch.allclose(trl_reference_logps(trainer, batch), expected, atol=1e-4)
    assert not torch.allclose(sequence_logps(trainer.model, batch), expected, atol=1e-2)  # the policy differs


def test_reference_adapter_is_a_frozen_named_adapter(tmp_path: Path) -> None:
    from peft import PeftModel
    ref_dir = saved_adapter(tmp_path, "ref-adapter", seed=7)
    models = models_for(tmp_path, reference={"kind": "adapter", "adapter": f"file://{ref_dir}"})
    trainer = dpo_trainer(tmp_path, models)
    model = trainer.model
    assert set(model.peft_config) == {"default", REFERENCE_ADAPTER}
    ref_params = [p for n, p in model.named_parameters() if f".{REFERENCE_ADAPTER}." in n]
    assert ref_params and not any(p.requires_grad for p in ref_params)
    assert any(p.requires_grad for n, p in model.named_parameters() if ".default." in n)
    batch = first_batch(trainer)
    independent = PeftModel.from_pretrained(models.base(), str(ref_dir))
    expected = sequence_logps(independent, batch)
    assert torch.allclose(trl_reference_logps(trainer, batch), expected, atol=1e-4)
    assert not torch.allclose(expected, sequence_logps(models.base(), batch), atol=1e-2)


def test_reference_precomputed_before_training(tmp_path: Path) -> None:
    """Precomputed = log-probs of the starting policy (here a fresh adapter, i.e. the base), cached before
    training, so later policy updates do not move them."""
    models = models_for(tmp_path, reference={"kind": "precomputed"})
    trainer = dpo_trainer(tmp_path, models, precompute=True)
    assert {"ref_chosen_logps", "ref_rejected_logps"} <= set(trainer.train_dataset.column_names)
    batch = first_batch(trainer)
    expected = sequence_logps(models.base(), batch)
    assert torch.allclose(torch.cat([batch["ref_chosen_logps"], batch["ref_rejected_logps"]]), expected, atol=1e-4)


def test_policy_initialised_from_adapter(tmp_path: Path) -> None:
    init_dir = saved_adapter(tmp_path, "sft-adapter", seed=3)
    models = models_for(tmp_path, adapter={"r": 4, "alpha": 8, "init": f"file://{init_dir}"})
    policy = models.policy()
    from safetensors.torch import load_file
    saved = load_file(str(init_dir / "adapter_model.safetensors"))
    state = {n: p for n, p in policy.named_parameters() if "lora_B" in n}
    assert state and all(p.requires_grad for p in state.values())
    key = next(k for k in saved if "lora_B" in k)
    live = next(p for n, p in state.items() if n.replace(".default", "") == key)
    assert torch.equal(live.detach(), saved[key])


@pytest.mark.parametrize("reference", ["adapter", "precomputed"])
def test_dpo_from_manifest_with_each_reference(tmp_path: Path, reference: str) -> None:
    ref: dict[str, Any] = {"kind": reference}
    if reference == "adapter":
        ref["adapter"] = f"file://{saved_adapter(tmp_path, 'ref-adapter', seed=5)}"
    config = manifest(tmp_path, f"dpo-{reference}", "dpo", "preference.openai.jsonl", hp={"maxSteps": 4},
                      model={"reference": ref})
    assert run(["--config", str(config), "--output", str(tmp_path / "out"), "--metrics-port", "-1"]) == ExitCode.OK
    assert (tmp_path / "out" / "final" / "adapter_model.safetensors").is_file()
    assert read_metrics(tmp_path / "out")[-1]["step"] == 4
