"""Checkpoints and final artifacts: atomic writes, validation before resume, publish, upload.

Every directory a reader may use appears by `rename` of a complete staging directory: `checkpoint-<N>`
(TRL/HF layout, so `trainer.train(resume_from_checkpoint=...)` restores optimizer, scheduler, RNG and
data position), `final/` (the policy adapter + model card) and `merged/`. A crash mid-write leaves only a
`.staging-*` directory, which is removed on the next start. Resume picks the newest checkpoint that
validates; invalid ones are skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from . import distributed, runstate, storage
from .checkpoint_index import PREFIX, index, list_checkpoints, step_of
from .errors import Interrupted
from .modelcard import model_card

if TYPE_CHECKING:
    from .contracts import TrainResult
    from .runtime import TrainContext

log = logging.getLogger(__name__)

STATE_FILES = ("trainer_state.json", "align_state.json")  # HF trainers write the first, custom loops the second
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "adapter_model.bin", "pytorch_model.bin")


def staging_dir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return parent / f".staging-{uuid.uuid4().hex[:12]}"


def commit_dir(staging: Path, target: Path) -> None:
    """Make `staging` visible as `target` in one rename; an older `target` is moved aside first and removed."""
    if target.exists():
        old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_staging(parent: Path) -> None:
    """Remove what a killed process left half-written."""
    if parent.is_dir():
        for entry in parent.iterdir():
            if entry.name.startswith((".staging-", ".old-")):
                shutil.rmtree(entry, ignore_errors=True)


def validate(path: Path) -> str | None:
    """None when `path` is a usable checkpoint, else why not."""
    if not path.is_dir():
        return "not a directory"
    state_file = next((path / f for f in STATE_FILES if (path / f).is_file()), None)
    if state_file is None:
        return "no trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return f"unreadable {state_file.name}: {exc}"
    if state.get("global_step") != step_of(path):
        return f"{state_file.name} says step {state.get('global_step')}, directory says {step_of(path)}"
    weights = [path / f for f in WEIGHT_FILES if (path / f).is_file()]
    if not weights:
        return "no model/adapter weights"
    for weight in weights:
        if weight.suffix == ".safetensors":
            try:
                from safetensors import safe_open
                with safe_open(str(weight), framework="pt") as fh:
                    fh.keys()
            except Exception as exc:  # truncated or corrupt file
                return f"corrupt {weight.name}: {exc}"
    if state_file.name == "trainer_state.json" and not (path / "optimizer.pt").is_file():
        return "no optimizer.pt"
    return None


def find_resume(directory: Path) -> Path | None:
    """The newest valid checkpoint (after removing leftovers of a killed save)."""
    clean_staging(directory)
    for path in reversed(list_checkpoints(directory)):
        problem = validate(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def finished_checkpoint(path: Path) -> bool:
    """True when an HF checkpoint's trainer_state.json says it reached the run's planned max_steps."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    steps, planned = state.get("global_step"), state.get("max_steps")
    return isinstance(steps, int) and isinstance(planned, int) and planned > 0 and steps >= planned


#: In the output directory (the checkpoint directory's parent): the steps promote.py published, never rotated away.
PROMOTED_FILE = "promoted.json"


def promoted_steps(output_dir: Path) -> set[int]:
    """The steps recorded as promoted in `output_dir` (promote.py writes them before it publishes)."""
    try:
        steps = json.loads((output_dir / PROMOTED_FILE).read_text(encoding="utf-8")).get("steps")
    except (OSError, ValueError, AttributeError):
        return set()
    return {int(s) for s in steps or [] if isinstance(s, int)}


def protected(ctx: "TrainContext") -> set[int]:
    """Checkpoints retention keeps whatever `keep` says: spec.promote.step (asked before training ended) and the
    steps already promoted in this output directory."""
    promote = ctx.spec.promote
    return ({promote.step} if promote is not None else set()) | promoted_steps(ctx.paths.output_dir)


def rotate(directory: Path, keep: int, protect: set[int] | frozenset[int] = frozenset()) -> None:
    """Delete all but the `keep` newest checkpoints, never a protected (promoted) one nor one recorded in
    promoted.json next to `directory`."""
    spared = set(protect) | promoted_steps(directory.parent)
    for path in list_checkpoints(directory)[:-keep]:
        if step_of(path) not in spared:
            shutil.rmtree(path, ignore_errors=True)


def export_index(ctx: "TrainContext") -> None:
    """Publish the kept checkpoints (after a save, and at the start of a resumed run); rank 0 only."""
    if distributed.is_main():
        ctx.metrics.checkpoints(index(ctx.paths.checkpoint_dir, ctx.paths.metrics_file))


def install_atomic_saves(trainer: Any, directory: Path, keep: int, on_commit: Any = None, ctx: Any = None) -> None:
    """Make an HF/TRL trainer write each checkpoint into a staging directory that is renamed into place,
    then rotate to `keep`. (transformers writes `checkpoint-N` in place; a kill mid-save would leave a
    directory that looks complete to its own resume logic.) With `ctx`, the checkpoint also holds the run
    state HF does not save (runstate.RUN_STATE_FILE: the grader-health window)."""
    original_save = trainer._save_checkpoint
    original_output_dir = trainer._get_output_dir

    def save(model: Any, trial: Any, *args: Any, **kwargs: Any) -> None:
        # Under torchrun every rank saves its part (rank 0 the weights and optimizer, each rank its RNG state)
        # into one staging directory of a name they agree on; rank 0 commits it once all are done.
        several = distributed.is_distributed()
        staging = directory / f".staging-step-{trainer.state.global_step}" if several else staging_dir(directory)
        staging.mkdir(parents=True, exist_ok=several)
        trainer._get_output_dir = lambda trial=None: str(staging)
        try:
            original_save(model, trial, *args, **kwargs)
        finally:
            trainer._get_output_dir = original_output_dir
        if ctx is not None:
            runstate.save_hf_run_state(ctx, staging / f"{PREFIX}{trainer.state.global_step}")
        distributed.barrier()
        if distributed.is_main():
            written = staging / f"{PREFIX}{trainer.state.global_step}"
            commit_dir(written, directory / written.name)
            shutil.rmtree(staging, ignore_errors=True)
            rotate(directory, keep, protected(ctx) if ctx is not None else frozenset())
            if on_commit is not None:
                on_commit()
        distributed.barrier()

    trainer._save_checkpoint = save


def _last_metrics(log_history: list[dict[str, Any]], *, evaluation: bool) -> dict[str, float]:
    """The newest value of every train (or eval_) scalar in the trainer's log history."""
    out: dict[str, float] = {}
    for entry in log_history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch") and \
                    key.startswith("eval_") == evaluation and not key.startswith("train_"):
                out[key] = float(value)
    return out


def run_hf_trainer(ctx: "TrainContext", trainer: Any) -> "TrainResult":
    """ctx.train(trainer): resume, train, checkpoint on SIGTERM, publish the final adapter."""
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)  # our ProgressLogCallback prints one readable line per log
    install_atomic_saves(trainer, ctx.paths.checkpoint_dir, ctx.spec.checkpoints.keep,
                         on_commit=lambda: export_index(ctx), ctx=ctx)
    resume = ctx.resume_from
    if resume is not None and finished_checkpoint(resume):
        # transformers would train one more step past max_steps on resume from the last checkpoint: a retry
        # after a post-training failure (upload, evaluation) loads the trained weights and redoes only that stage
        from transformers import TrainerState
        log.info("%s holds every planned step: not training again, publishing it", resume)
        trainer._load_from_checkpoint(str(resume))
        trainer.state = TrainerState.load_from_json(str(resume / "trainer_state.json"))
    else:
        if resume is not None:
            log.info("resuming from %s", resume)
            runstate.restore_hf_run_state(ctx, resume)
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    state = trainer.state
    if ctx.stop_requested():
        raise ctx.interrupted(state.global_step)
    if ctx.spec.resources.strategy == "ddp":  # FSDP ranks hold different shards by design
        distributed.check_in_sync(trainer.model)
    result = publish_final(ctx, trainer.model, step=state.global_step, total_steps=state.max_steps,
                           metrics=_last_metrics(state.log_history, evaluation=False),
                           eval_metrics=_last_metrics(state.log_history, evaluation=True))
    result.resumed_from = resume
    return result


def save_custom_checkpoint(ctx: "TrainContext", model: Any, step: int, state: Mapping[str, Any]) -> Path:
    """Checkpoint for algorithms with their own loop: adapter weights + align_state.json (+ state.pt for
    tensors such as optimizer state), renamed into place, rotated."""
    import torch
    directory = ctx.paths.checkpoint_dir
    staging = staging_dir(directory)
    staging.mkdir()
    model.save_pretrained(str(staging))
    plain = {k: v for k, v in state.items() if _jsonable(v)}
    tensors = {k: v for k, v in state.items() if k not in plain}
    if tensors:
        torch.save(tensors, staging / "state.pt")
    (staging / "align_state.json").write_text(json.dumps({"global_step": step, **plain}), encoding="utf-8")
    target = directory / f"{PREFIX}{step}"
    commit_dir(staging, target)
    rotate(directory, ctx.spec.checkpoints.keep, protected(ctx))
    export_index(ctx)
    return target


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def publish_final(ctx: "TrainContext", model: Any, *, step: int, total_steps: int | None,
                  metrics: dict[str, float], eval_metrics: dict[str, float]) -> "TrainResult":
    """Final adapter (+ tokenizer, model card) -> final/; optional merged/; upload to spec.output.uri."""
    from .models import DEFAULT_ADAPTER, _unwrap_peft, portable_base_reference
    from .contracts import TrainResult
    if not distributed.is_main():  # rank 0 writes, evaluates and uploads; the other ranks report the numbers
        return TrainResult(steps=step, total_steps=total_steps, metrics=metrics, eval_metrics=eval_metrics)
    paths = ctx.paths
    peft_model = _unwrap_peft(model)
    staging = staging_dir(paths.output_dir)
    if peft_model is not None:
        peft_model.save_pretrained(str(staging), selected_adapters=[DEFAULT_ADAPTER])
        portable_base_reference(staging, ctx.spec.model.base)
    else:
        model.save_pretrained(str(staging))
    ctx.tokenizer.save_pretrained(str(staging))
    (staging / "README.md").write_text(model_card(ctx, step=step, metrics=metrics, eval_metrics=eval_metrics),
                                       encoding="utf-8")
    commit_dir(staging, paths.final_dir)
    result = TrainResult(steps=step, total_steps=total_steps, metrics=metrics, eval_metrics=eval_metrics,
                         adapter_dir=paths.final_dir, checkpoints=list_checkpoints(paths.checkpoint_dir),
                         checkpoint_index=index(paths.checkpoint_dir, paths.metrics_file))
    for hook in ctx.before_publish:  # e.g. evaluation gates: raising here keeps the adapter unpublished
        hook(ctx, model, result)
    if ctx.spec.output.merge:
        result.merged_dir = merge(ctx, paths.final_dir, paths.output_dir / "merged")
    uri = ctx.output_uri
    if uri:
        result.adapter_uri = storage.upload(paths.final_dir, uri, base_dir=paths.base_dir, name="adapter")
        if result.merged_dir is not None:
            result.merged_uri = storage.upload(result.merged_dir, uri, base_dir=paths.base_dir, name="merged")
        if paths.metrics_file.exists():
            storage.upload(paths.metrics_file, uri, base_dir=paths.base_dir, name="metrics.jsonl")
    return result


def merge(ctx: "TrainContext", adapter_dir: Path, target: Path) -> Path:
    """Base with the adapter merged in, in the base's compute dtype (never 4-bit: merging into quantized
    weights loses the adapter's precision)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    dtype = ctx.device.torch_dtype if not ctx.device.quantized else getattr(
        __import__("torch"), ctx.spec.model.quantization.compute_dtype)  # type: ignore[union-attr]
    base = AutoModelForCausalLM.from_pretrained(ctx.models.base_name, dtype=dtype,
                                                trust_remote_code=ctx.spec.model.trust_remote_code)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    staging = staging_dir(target.parent)
    merged.save_pretrained(str(staging))
    ctx.tokenizer.save_pretrained(str(staging))
    commit_dir(staging, target)
    return target


__all__ = ["PROMOTED_FILE", "Interrupted", "commit_dir", "promoted_steps", "protected", "export_index", "find_resume", "install_atomic_saves", "list_checkpoints", "publish_final",
           "run_hf_trainer", "save_custom_checkpoint", "validate"]
