"""What reaches the trainer, recorded (test_knob_wiring.py): every TRL trainer an algorithm builds is replaced by
a recorder of its config, arguments and datasets (a TRL stage inside an algorithm "trains" in no time; the datasets
show what truncation.py cut), the prompt budget beside generated completions, our own loops run
one real step on builtin://tiny with their generation settings, loss arguments, optimizer, learning-rate
schedule, KL controller and sampled completions recorded, and the run stops at its first complete step."""

from __future__ import annotations

import dataclasses
import json
import typing
from types import SimpleNamespace
from typing import Any

import pytest

#: TRL trainers the algorithms build (module, class name)
TRL_TRAINERS = (("trl", "SFTTrainer"), ("trl", "DPOTrainer"), ("trl", "KTOTrainer"), ("trl", "RewardTrainer"),
                ("trl", "GRPOTrainer"), ("trl", "RLOOTrainer"), ("trl.experimental.online_dpo", "OnlineDPOTrainer"),
                ("trl.experimental.cpo", "CPOTrainer"), ("trl.experimental.orpo", "ORPOTrainer"))
#: config fields that name places, not settings
PLACES = {"output_dir", "logging_dir", "run_name", "hub_model_id"}


class Stop(Exception):
    """The run reached its first complete step: what it recorded is all the walk needs."""


def plain(value: Any) -> Any:
    """A comparable, JSON-like copy (tensors as lists, objects by their fields, callables by name)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if str(k) not in PLACES}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return type(value).__name__


class Recording:
    """The trace of one run: a list of (what, recorded values)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def add(self, what: str, value: Any) -> None:
        self.events.append((what, plain(value)))

    def text(self) -> str:
        return json.dumps(self.events, sort_keys=True, default=str)


def install(mp: pytest.MonkeyPatch, rec: Recording) -> None:
    """Replace the TRL trainers and spy on our loops' boundaries; the first own-loop step or ctx.train() stops."""
    import importlib

    import torch

    from align_trainer import online, preference_rounds, runtime, truncation
    from align_trainer.algorithms import ppo

    class FakeTrainer:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.kwargs = kwargs
            self.model = kwargs.get("model")
            self.args = kwargs.get("args")
            self.data_collator = kwargs.get("data_collator")
            self.state = SimpleNamespace(log_history=[{"loss": 0.0, "accuracy": 0.5}], global_step=0, max_steps=0)

        def _record(self) -> None:
            own = {k: v for k, v in vars(self).items() if isinstance(v, (int, float, str, bool)) and k != "state"}
            extra = {k: v for k, v in self.kwargs.items() if isinstance(v, (int, float, str, bool))}
            data = {split: [dict(row) for row in self.kwargs[split]] for split in ("train_dataset", "eval_dataset")
                    if self.kwargs.get(split) is not None}  # the rows it trains on: prompts as truncation.py cut them
            rec.add(type(self).__name__, {"config": self.args.to_dict() if self.args is not None else None,
                                          "own": own, "kwargs": extra, "data": data,
                                          "rewards": [getattr(f, "__name__", type(f).__name__)
                                                      for f in self.kwargs.get("reward_funcs") or []]})

        def train(self, *args: Any, **kwargs: Any) -> None:
            self._record()

        def remove_callback(self, *_: Any) -> None:
            pass

        add_callback = remove_callback

    for module, name in TRL_TRAINERS:
        mp.setattr(importlib.import_module(module), name, type(name, (FakeTrainer,), {}))

    def train(self: Any, trainer: Any) -> Any:
        trainer._record()
        raise Stop

    mp.setattr(runtime.TrainContext, "train", train)

    def spy(owner: Any, name: str, *, stop: bool = False, record_result: bool = False) -> None:
        real = getattr(owner, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            scalars = [a for a in args if isinstance(a, (int, float, str, bool))]
            named = {k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool, list, tuple)) or v is None}
            rec.add(name, {"args": scalars, "kwargs": named})
            if stop:
                raise Stop
            result = real(*args, **kwargs)
            if record_result:
                rec.add(name + "->", getattr(result, "texts", result) if not isinstance(result, tuple) else
                        [r for r in result if isinstance(r, (int, float, list))])
            return result
        mp.setattr(owner, name, wrapped)

    spy(online, "generate", record_result=True)        # generation settings and what was sampled
    spy(online, "total_steps", record_result=True)
    spy(ppo, "ppo_losses")                             # clip ranges, vf_coef
    spy(ppo, "gae")                                    # gamma, lambda
    spy(ppo, "penalised_rewards")                      # KL coefficient, reward whitening
    spy(preference_rounds, "move_reference")          # roundReference: previous, from round 2 on
    spy(truncation, "prompt_budget", record_result=True)  # the prompt room beside generated completions

    real_logprobs = online.token_logprobs

    def token_logprobs(model: Any, *args: Any, **kwargs: Any) -> Any:  # how our loops' training forward runs
        inner = getattr(model, "module", model)  # DDP
        inner = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
        rec.add("token_logprobs", {"checkpointing": bool(getattr(inner, "is_activation_checkpointing", False)),
                                   "training": model.training})
        return real_logprobs(model, *args, **kwargs)
    mp.setattr(online, "token_logprobs", token_logprobs)

    real_end = online.end_round
    in_rounds: list[int] = []

    def end_round(ctx: Any, model: Any, metrics: Any, history: Any, round_no: int, rounds: int) -> None:
        rec.add("end_round", [round_no, rounds])
        if round_no >= 2:  # a round-based loop's second round is complete (the first with a moved reference)
            raise Stop
        in_rounds.append(round_no)
        real_end(ctx, model, metrics, history, round_no, rounds)
    mp.setattr(online, "end_round", end_round)

    real_lr = online.learning_rate_at

    def learning_rate_at(hp: Any, step: int, total: int) -> float:  # the whole schedule, not one step of it
        rec.add("lr_schedule", [real_lr(hp, s, total) for s in range(min(total, 16))])
        return real_lr(hp, step, total)
    mp.setattr(online, "learning_rate_at", learning_rate_at)

    class AdamW(torch.optim.AdamW):
        def __init__(self, params: Any, **kwargs: Any) -> None:
            rec.add("AdamW", kwargs)
            super().__init__(params, **kwargs)
    mp.setattr(torch.optim, "AdamW", AdamW)

    real_clip = torch.nn.utils.clip_grad_norm_

    def clip(params: Any, max_norm: float, *args: Any, **kwargs: Any) -> Any:
        rec.add("clip_grad_norm", max_norm)
        return real_clip(params, max_norm, *args, **kwargs)
    mp.setattr(torch.nn.utils, "clip_grad_norm_", clip)

    real_update = ppo.KLController.update

    def update(self: Any, kl: float, n_samples: int) -> None:
        rec.add("KLController", self)
        real_update(self, kl, n_samples)
    mp.setattr(ppo.KLController, "update", update)

    from align_trainer import metrics
    real_metrics_log = metrics.Metrics.log

    def log(self: Any, values: Any, *, step: int, epoch: Any = None) -> None:  # which steps log what
        rec.add("log", [step, sorted(values)])
        real_metrics_log(self, values, step=step, epoch=epoch)
    mp.setattr(metrics.Metrics, "log", log)

    def progress(self: Any, *, step: int, total_steps: Any, epoch: Any = None) -> None:  # an own loop's first step
        rec.add("progress", [step, total_steps])
        if not in_rounds:
            raise Stop
    mp.setattr(metrics.Metrics, "progress", progress)


def non_default(name: str, algorithm: Any, current: Any) -> Any:
    """A valid value of hyperparameter `name` other than `current` (from the field's type and bounds)."""
    from align_api.hyperparameters import LOSS_TYPES, Hyperparameters
    field = Hyperparameters.model_fields[name]
    if name == "loss_type":
        choices = LOSS_TYPES[algorithm]
        return next(c for c in choices if c != (current or choices[0]) and c != "sft")
    if name == "thought_prompt":
        return "Reason step by step, then answer after <R>. {query}"
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    literal = next((a for a in [annotation, *args] if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        return next(c for c in typing.get_args(literal) if c != current)
    kind = args[0] if args else annotation
    bounds = {type(m).__name__: m for m in field.metadata}
    low = getattr(bounds.get("Ge"), "ge", None) or getattr(bounds.get("Gt"), "gt", None) or 0
    high = getattr(bounds.get("Le"), "le", None) or getattr(bounds.get("Lt"), "lt", None)
    if kind is bool:
        return not current
    if kind is int:
        value = (current or max(1, int(low))) * 2 if name.endswith("_size") or name == "num_generations" else (current or max(1, int(low))) + 1
        return value if high is None or value <= high else current - 1
    if kind is float:
        if current in (None, 0, 0.0):
            value = 0.3 if high is None else min(0.3, high * 0.6)
            return max(value, float(low) * 2 if low else value)
        return current * 0.5 if current * 0.5 > low else min(current * 1.5, high or current * 1.5)
    raise AssertionError(f"no non-default value known for hyperparameter {name} ({annotation})")
