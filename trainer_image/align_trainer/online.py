"""Pieces shared by the online algorithms with their own loop (ppo, rlaif, tpo): prompts, sampling,
per-token log-probs under the policy or the reference, the prompt schedule and checkpoint/resume.

Batches count completions, as in TRL's GRPO: each step samples `batchSize / numGenerations` prompts and
`numGenerations` completions for each.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from .chat import prompt_text
from .runtime import TrainContext




@dataclass
class Rollout:
    """Sampled completions: ids[b] = prompt (left-padded) + completion (right-padded)."""

    input_ids: Any          #: (B, P + C)
    attention_mask: Any     #: (B, P + C), 0 on padding and after the completion's EOS
    prompt_len: int         #: P
    completion_mask: Any    #: (B, C), 1 on completion tokens up to and including EOS
    texts: list[str]        #: decoded completions (special tokens skipped)


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a completion (chat.stop_ids: EOS, the generation_config's, the template's end of turn)."""
    from .chat import stop_ids
    return stop_ids(model, tokenizer)


def sample_texts(ctx: Any, model: Any, prompts: Sequence[Any]) -> list[str]:
    """One completion per prompt (dataset prompts: text or messages) with the job's generation settings, in
    batches of hyperparameters.batchSize. Used by every loop that samples its own answers (tpo, iterative rounds)."""
    return sample_with_kl(ctx, model, prompts, kl=False)[0]


def sample_with_kl(ctx: Any, model: Any, prompts: Sequence[Any], *, kl: bool = True) -> tuple[list[str], list[float]]:
    """sample_texts, and with `kl` each completion's Monte-Carlo KL(pi || pi_ref): the sum over its tokens of
    log pi - log pi_ref, from the network that sampled (eval mode: no dropout). Used by the held-out probes
    (reft, tpo)."""
    import torch
    hp = ctx.hp
    texts = [prompt_text(ctx.tokenizer, p) for p in prompts]
    temperature = hp.temperature if hp.temperature > 0 else 1.0
    out: list[str] = []
    kls: list[float] = []
    was_training = model.training
    try:
        for start in range(0, len(texts), hp.batch_size):
            rollout = generate(model, ctx.tokenizer, texts[start:start + hp.batch_size],
                               max_new_tokens=hp.max_completion_length, temperature=hp.temperature,
                               top_p=hp.top_p, max_prompt_length=hp.max_prompt_length)
            out.extend(rollout.texts)
            if kl:
                model.eval()
                with torch.no_grad():
                    logp, _, _ = token_logprobs(model, rollout, temperature=temperature)
                    with reference_mode(model):
                        ref_logp, _, _ = token_logprobs(model, rollout, temperature=temperature)
                kls.extend(((logp - ref_logp) * rollout.completion_mask).sum(1).tolist())
    finally:
        model.train(was_training)
    return out, kls


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, temperature: float,
             top_p: float = 1.0, max_prompt_length: int | None = None) -> Rollout:
    """All prompts in one batch: left-padded (the new tokens of every row start at the same column, and
    transformers derives positions from the attention mask), one prefill, then one decoding step per token
    over the KV cache; a row stops at its first EOS (pads after it) and the batch when every row has.
    temperature 0 decodes greedily (the reference the correctness test compares with)."""
    import torch
    side, trunc_side = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"  # a truncated prompt keeps its end
    try:
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False,
                        truncation=max_prompt_length is not None, max_length=max_prompt_length)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, trunc_side
    device = next(model.parameters()).device
    enc = enc.to(device)
    eos = eos_ids(model, tokenizer)
    sampling = temperature > 0
    kwargs: dict[str, Any] = (dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if sampling else
                              dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(**enc, **kwargs, max_new_tokens=max_new_tokens, use_cache=True,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=eos or None)
    finally:
        model.train(was_training)
    prompt_len = enc["input_ids"].shape[1]
    completion = out[:, prompt_len:]
    is_eos = torch.isin(completion, torch.tensor(eos, device=completion.device))
    # keep tokens up to and including the first EOS
    after_eos = (is_eos.cumsum(1) - is_eos.long()) > 0
    completion_mask = (~after_eos).long()
    attention = torch.cat([enc["attention_mask"], completion_mask], dim=1)
    texts = tokenizer.batch_decode(completion * completion_mask + tokenizer.pad_token_id * (1 - completion_mask),
                                   skip_special_tokens=True)
    return Rollout(out, attention, prompt_len, completion_mask, texts)


def token_logprobs(model: Any, rollout: Rollout, *, temperature: float, with_hidden: bool = False) -> tuple[Any, Any, Any]:
    """(log pi(y_t | x, y_<t) for each completion token (B, C), entropy per token (B, C), last hidden states
    of the completion positions (B, C, H) or None). Logits are divided by the sampling temperature, so the
    probabilities are those the tokens were sampled from."""
    import torch
    out = model(input_ids=rollout.input_ids, attention_mask=rollout.attention_mask,
                output_hidden_states=with_hidden)
    start = rollout.prompt_len - 1
    logits = out.logits[:, start:-1, :].float() / temperature
    targets = rollout.input_ids[:, rollout.prompt_len:]
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    hidden = out.hidden_states[-1][:, start:-1, :] if with_hidden else None
    return logp, entropy, hidden


@contextlib.contextmanager
def reference_mode(model: Any) -> Iterator[None]:
    """The frozen reference: the "ref" adapter when loaded (spec.model.reference.kind=adapter), else the base
    with adapters disabled (kind=base). See runtime.py for the convention."""
    from .models import DEFAULT_ADAPTER, REFERENCE_ADAPTER, _unwrap_peft
    peft_model = _unwrap_peft(model)
    if peft_model is not None and REFERENCE_ADAPTER in peft_model.peft_config:
        peft_model.set_adapter(REFERENCE_ADAPTER)
        try:
            yield
        finally:
            peft_model.set_adapter(DEFAULT_ADAPTER)
            for name, p in peft_model.named_parameters():  # set_adapter re-enables grads on the active one only
                if f".{REFERENCE_ADAPTER}." in name:
                    p.requires_grad_(False)
    elif peft_model is not None:
        with peft_model.disable_adapter():
            yield
    else:
        yield


def require_single_process(algorithm: str) -> None:
    """For loops not yet data-parallel (iterative dpo/rpo rounds): under torchrun every rank would sample, write
    and train its own copy. ppo, rlaif and tpo are data-parallel (see distributed.py)."""
    from . import distributed
    from .errors import ConfigError
    if distributed.is_distributed():
        raise ConfigError(f"{algorithm} runs in a single process: set resources.nodes: 1 and one rank per pod "
                          "(gpusPerNode: 1 or processesPerNode: 1)")


def prompts_per_step(hp: Any) -> int:
    return max(1, (hp.batch_size * hp.gradient_accumulation_steps) // hp.num_generations)


def total_steps(hp: Any, rows: int, per_step: int) -> int:
    return hp.max_steps or max(1, hp.epochs * math.ceil(rows / per_step))


def prompt_batches(rows: Sequence[dict[str, Any]], per_step: int, seed: int, start_step: int = 0) -> Iterator[list[dict[str, Any]]]:
    """Endless batches of rows, reshuffled every epoch with the seed (deterministic, so a resumed run sees the
    same schedule from `start_step` on)."""
    order: list[int] = []
    epoch, produced = 0, 0
    while True:
        if len(order) < per_step:
            fresh = list(range(len(rows)))
            random.Random(seed + epoch).shuffle(fresh)
            order += fresh
            epoch += 1
        batch, order = order[:per_step], order[per_step:]
        if produced >= start_step:
            yield [rows[i] for i in batch]
        produced += 1


def resume_state(ctx: TrainContext, model: Any) -> tuple[int, dict[str, Any]]:
    """(step, saved tensors) from ctx.resume_from (a custom-loop checkpoint), loading its adapter weights."""
    import json

    import torch
    if ctx.resume_from is None:
        return 0, {}
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from .models import _unwrap_peft
    path = ctx.resume_from
    weights = path / "adapter_model.safetensors"
    peft_model = _unwrap_peft(model)
    if weights.is_file() and peft_model is not None:
        set_peft_model_state_dict(peft_model, load_file(str(weights)))
    state = json.loads((path / "align_state.json").read_text())
    tensors = torch.load(path / "state.pt", weights_only=False) if (path / "state.pt").is_file() else {}
    return int(state["global_step"]), {**state, **tensors}


def disable_dropout(model: Any) -> None:
    """Dropout off in every module (LoRA's included): generation runs in eval mode, so with dropout on the
    log-probs and values computed in train mode would come from a different random network than the one that
    sampled (ratio != 1 on the first, on-policy epoch; a KL estimate that is dropout noise). TRL's trainers do
    the same (`disable_dropout`)."""
    from trl.trainer.utils import disable_dropout_in_model
    disable_dropout_in_model(model)


def learning_rate_at(hp: Any, step: int, total: int) -> float:
    """The learning rate of optimizer step `step` (0-based) of `total` under hyperparameters.lrScheduler and
    warmupRatio, with transformers' schedule functions (the ones HF's Trainer uses for the TRL algorithms)."""
    import torch
    from transformers import get_scheduler

    from .runtime import SCHEDULER_KWARGS
    warmup = math.ceil(hp.warmup_ratio * total)
    extra = SCHEDULER_KWARGS.get(hp.lr_scheduler)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=hp.learning_rate)
    schedule = get_scheduler(hp.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total,
                             scheduler_specific_kwargs=extra)
    return hp.learning_rate * schedule.lr_lambdas[0](step)


def whiten(values: Any, mask: Any, shift_mean: bool = True) -> Any:
    """(x - mean) / std over the masked entries (PPO's advantage/reward whitening)."""
    import torch
    n = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / n
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def end_round(ctx: Any, model: Any, metrics: dict[str, float], history: list[dict[str, float]], round_no: int,
              rounds: int) -> None:
    """A finished round of an iterative algorithm (dpo/rpo rounds, tpo): its metrics logged and kept, progress,
    a checkpoint, then SIGTERM honoured (the restart resumes at the next round)."""
    history.append(dict(metrics))
    ctx.metrics.log(metrics, step=round_no)
    ctx.metrics.progress(step=round_no, total_steps=rounds)
    ctx.save_checkpoint(model, round_no, {"round": round_no})
    if ctx.stop_requested():
        raise ctx.interrupted(round_no)


def masked_mean(values: Any, mask: Any) -> Any:
    return (values * mask).sum() / mask.sum().clamp(min=1)
