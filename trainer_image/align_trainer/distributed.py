"""Several ranks under torchrun: who writes, how our own loops split the work and agree, and collectives that
fail instead of hanging.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK for every worker. TRL/HF trainers do data parallelism on their own
(accelerate wraps the model in DDP or FSDP); this module gives the rest of the trainer the same footing:

* one process group, initialised early (before models load) with the backend the device needs (gloo on CPU,
  nccl on CUDA) and `spec.resources.collectiveTimeoutSeconds` as the timeout of every collective: a rank
  that died makes the others fail after that long (and the Job retry) instead of waiting forever;
* rank 0 writes (metrics endpoint, metrics.jsonl, status.json, checkpoints, final adapter, evaluation,
  upload); the others only train;
* the decisions every rank must take together are collectives: "did any rank get SIGTERM?"
  (`any_rank`), "which checkpoint do we resume?" (`broadcast` from rank 0), the step's metrics (`mean_metrics`);
* our own loops (ppo, rlaif, tpo) shard each step's prompts over ranks (`shard`), sample with a per-rank seed
  (`sampling_seed`) and average gradients with DDP around the trainable parts (`wrap_ddp`).

With WORLD_SIZE unset or 1 every function is the single-process identity, so nothing changes for one rank.
"""

from __future__ import annotations

import datetime
import logging
import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypeVar

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
T = TypeVar("T")


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the only rank that writes files, serves metrics and publishes."""
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def backend_for(device: str) -> str:
    """gloo on CPU (all our tests and CPU-only clusters), nccl on CUDA."""
    return "nccl" if device == "cuda" else "gloo"


def _initialized() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def init(device: str, timeout_seconds: int) -> bool:
    """Join the process group (idempotent; accelerate later reuses it). True when distributed."""
    if not is_distributed():
        return False
    import torch
    import torch.distributed as dist
    if not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend_for(device), timeout=datetime.timedelta(seconds=timeout_seconds))
        log.info("rank %d of %d joined the process group (%s, collective timeout %ds)", rank(), world_size(),
                 dist.get_backend(), timeout_seconds)
    return True


def barrier() -> None:
    if _initialized():
        import torch.distributed as dist
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on at least one (e.g. SIGTERM reached only one rank)."""
    if not _initialized():
        return flag
    import torch
    import torch.distributed as dist
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast(obj: T) -> T:
    """Rank 0's value of `obj` on every rank (any picklable object)."""
    if not _initialized():
        return obj
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(items: Sequence[T]) -> list[T]:
    """Every rank's `items` concatenated in rank order, on every rank."""
    if not _initialized():
        return list(items)
    import torch.distributed as dist
    boxes: list[Any] = [None] * world_size()
    dist.all_gather_object(boxes, list(items))
    return [item for box in boxes for item in box]


def mean_metrics(values: Mapping[str, float]) -> dict[str, float]:
    """The mean over ranks of each scalar (a key missing on a rank is averaged over the ranks that have it),
    so every rank logs, and checks for divergence, the same numbers."""
    if not _initialized():
        return dict(values)
    import torch.distributed as dist
    boxes: list[Any] = [None] * world_size()
    dist.all_gather_object(boxes, {k: float(v) for k, v in values.items()})
    keys = sorted({k for box in boxes for k in box})
    return {k: sum(box[k] for box in boxes if k in box) / sum(1 for box in boxes if k in box) for k in keys}


def shard(items: Sequence[T], index: int | None = None, count: int | None = None) -> list[T]:
    """Rank `index`'s share of `items`: every count-th item starting at index (equal sizes when divisible)."""
    index = rank() if index is None else index
    count = world_size() if count is None else count
    return list(items[index::count])


def sampling_seed(seed: int, start_step: int = 0, index: int | None = None) -> int:
    """A different, reproducible sampling seed per rank (rank 0 of a fresh run keeps `seed`): ranks must not
    draw the same completions, and a run resumed at `start_step` must not replay the first steps' draws."""
    return seed + 1_000_003 * (rank() if index is None else index) + 7_919 * start_step


def wrap_ddp(module: "torch.nn.Module") -> "torch.nn.Module":
    """DDP around a module with trainable parameters (gradients averaged over ranks in backward); the module
    itself when not distributed. DDP's construction also broadcasts rank 0's parameters to the others."""
    if not _initialized():
        return module
    from torch.nn.parallel import DistributedDataParallel
    device = next(module.parameters()).device
    # forward_sync_buffers=False: the only buffers are constants (rotary frequencies); syncing them would add a
    # collective to every forward, including the no-grad ones of sampling and the reference
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   forward_sync_buffers=False)


def unwrap(module: Any) -> Any:
    """The module inside a DDP wrapper (for generation, saving and no-grad passes that need no sync)."""
    from torch.nn.parallel import DistributedDataParallel
    return module.module if isinstance(module, DistributedDataParallel) else module


def fingerprint(module: "torch.nn.Module") -> list[float]:
    """Sum and sum of squares of the trainable parameters, in float64: equal on replicas that stayed in sync."""
    import torch
    total, squares = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for p in module.parameters():
        if p.requires_grad:
            value = p.detach().double().cpu()
            total += value.sum()
            squares += (value * value).sum()
    return [float(total), float(squares)]


def check_in_sync(module: "torch.nn.Module", what: str = "policy") -> None:
    """Raise when the ranks' trainable parameters differ (a gradient that was not all-reduced): publishing
    rank 0's copy would hide that the ranks trained different models."""
    if not _initialized():
        return
    prints = gather([fingerprint(unwrap(module))])
    if any(p != prints[0] for p in prints[1:]):
        from .errors import TrainerError
        raise TrainerError(f"the ranks' {what} parameters differ after training ({prints}): gradients were not "
                           "averaged over ranks")


def gradient_bytes(module: "torch.nn.Module") -> int:
    """Bytes DDP all-reduces per optimizer step: every trainable parameter's gradient once."""
    return sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)


#: accelerate's FSDP2 settings for `resources.strategy: fsdp`: shard parameters, gradients and optimizer state
#: per transformer block (wrapped by the model's own `_no_split_modules`), reshard after forward (least memory),
#: and save a full state dict on rank 0 so checkpoints and the final adapter keep the single-process layout.
FSDP_CONFIG: dict[str, Any] = {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                               "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT",
                               "cpu_ram_efficient_loading": False}


def trainer_parallelism(resources: Any, device: str) -> dict[str, Any]:
    """TrainingArguments for spec.resources (what accelerate turns into DDP or FSDP for TRL trainers)."""
    out: dict[str, Any] = {"ddp_timeout": resources.collective_timeout_seconds}
    if resources.world_size > 1:
        out["ddp_backend"] = backend_for(device)
        out["ddp_find_unused_parameters"] = False  # LoRA: every trainable parameter takes part in each forward
    if resources.strategy == "fsdp":
        out["fsdp"] = "full_shard auto_wrap"
        out["fsdp_config"] = dict(FSDP_CONFIG)
    return out


def _collective_device() -> str:
    import torch.distributed as dist
    return f"cuda:{local_rank()}" if dist.get_backend() == "nccl" else "cpu"


def destroy() -> None:
    if _initialized():
        import torch.distributed as dist
        dist.destroy_process_group()


__all__ = ["any_rank", "backend_for", "barrier", "broadcast", "check_in_sync", "destroy", "fingerprint", "gather", "gradient_bytes", "init",
           "is_distributed", "is_main", "local_rank", "mean_metrics", "rank", "sampling_seed", "shard", "trainer_parallelism", "unwrap",
           "world_size", "wrap_ddp"]
