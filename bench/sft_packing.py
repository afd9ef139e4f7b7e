"""SFT packing and padding-free: the same SFT job padded, packed (TRL's best-fit-decreasing packing,
padding-free) and padding-free without packing (`hyperparameters.paddingFree`).

Both sides run our trainer's SFT path (`algorithms/sft.build_trainer` on a context built from a manifest by
`main.build_context`); the only difference is `hyperparameters.packing` and the batch size, chosen so both
take about the same number of real tokens per optimizer step (padded: `--batch` examples; packed: rows of
maxLength tokens, as many as hold that many tokens on average). The padding-free side takes the padded side's
`--batch` examples per step, concatenated into one row without pad tokens. The unbatched side, a second
reference, takes the same examples one per micro-batch (batchSize 1, gradient accumulation `--batch`): no pad
tokens either, and no attention across the flattened row. The data is chat rows with a realistic
spread of lengths: short chat turns to long documents (log-normal lengths, seeded), text from this repo's
docs. Timed is `trainer.train()` for one epoch; tokens/s counts real (non-pad) tokens of the tokenized rows.
After training, each model's loss per real token is measured the same way for both: unpacked, on held-out
rows, sum of token NLL / number of trained tokens. Runs rotate through the sides; medians are reported.

    python bench/sft_packing.py [--rows 384] [--repeat 3] [--max-length 512] [--batch 8] [--hidden 256 --layers 4]
                                [--sides padded,packed,padding-free,unbatched] [--held 48]
    python bench/sft_packing.py --model builtin://smollm2-135m-instruct --rows 24 --held 8 --repeat 1 --max-length 256 \
                                --sides padded,packed   # 9.5 minutes at load 10 (docs/performance.md)

--model takes any spec.model.base (default builtin://tiny, which --hidden/--layers widen and deepen); the rows are
tokenized with that model's own tokenizer and chat template, as the trainer does. The bench checks itself before
timing anything: the packed side's trainer must hold fewer rows than there are examples and exactly the padded
side's real tokens (nothing dropped or cut), the others one row per example; otherwise it stops. Each side's peak
RSS while `trainer.train()` runs (sampled every 5 ms) is reported beside its tokens/s.

Last line: `sft_packing: ratio=X cpu_ratio=... padding_free_ratio=Y padding_free_cpu_ratio=... ...
tokens_per_s_padded=... tokens_per_s_packed=... tokens_per_s_padding_free=... loss_padded=... loss_packed=...
loss_padding_free=... peak_rss_mb_padded=... ...` with X = median real tokens/s (packed) / median real tokens/s (padded), Y the same for
padding-free, and each cpu_ratio the same for real tokens per CPU second of trainer.train() (which a loaded
machine disturbs less); sides not run are left out.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import yaml  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def corpus_words() -> list[str]:
    words: list[str] = []
    for path in sorted((REPO / "docs").glob("*.md")):
        words += path.read_text().split()
    return [w for w in words if w.isascii()]


def write_rows(path: Path, n: int, seed: int, words: list[str]) -> None:
    """Chat rows whose lengths spread like real SFT data: most are short turns, a tail is long documents
    (log-normal characters; the builtin tokenizer is byte-level, so characters ~ tokens; a real model's BPE
    tokenizer makes about a quarter as many)."""
    rng = random.Random(seed)
    with path.open("w") as out:
        for _ in range(n):
            chars = int(min(1500, max(12, rng.lognormvariate(math.log(90), 1.0))))
            start = rng.randrange(len(words))
            text, i = [], start
            while sum(len(w) + 1 for w in text) < chars:
                text.append(words[i % len(words)])
                i += 1
            question = " ".join(words[(start + 7) % len(words):(start + 7) % len(words) + rng.randint(2, 8)])
            out.write(json.dumps({"messages": [{"role": "user", "content": question},
                                               {"role": "assistant", "content": " ".join(text)}]}) + "\n")


def model_dir(root: Path, hidden: int, layers: int) -> str:
    """builtin://tiny's architecture and tokenizer, wider and deeper (builtin.build_model overrides, same seed):
    builtin://tiny itself is so small that per-step overhead, not tokens, sets its speed."""
    from align_trainer import builtin
    if hidden == 64 and layers == 2:
        return "builtin://tiny"
    target = root / f"model-{hidden}x{layers}"
    heads = max(1, hidden // 64)
    builtin.build_model("tiny", hidden_size=hidden, intermediate_size=-(-hidden * 8 // 3 // 16) * 16,
                        num_hidden_layers=layers, num_attention_heads=heads,
                        num_key_value_heads=heads).save_pretrained(target)
    builtin.build_tokenizer().save_pretrained(target)
    return f"file://{target}"


def write_manifest(path: Path, train: Path, *, base: str, packing: bool, batch: int, max_length: int,
                   padding_free: bool = False, accumulation: int = 1) -> Path:
    doc = {"apiVersion": "align.dev/v1alpha1", "kind": "AlignmentJob", "metadata": {"name": "bench-packing"},
           "spec": {"algorithm": "sft",
                    "model": {"base": base, "adapter": {"r": 8, "alpha": 16, "dropout": 0.0}},
                    "data": {"train": {"uri": str(train), "format": "openai-chat"}},
                    "hyperparameters": {"batchSize": batch, "gradientAccumulationSteps": accumulation,
                                        "epochs": 1, "learningRate": 0.005,
                                        "maxLength": max_length, "loggingSteps": 10, "seed": 42,
                                        "packing": packing, "paddingFree": padding_free},
                    "resources": {"gpusPerNode": 0}, "checkpoints": {"everySteps": 100000, "keep": 1},
                    "evaluation": {"enabled": False}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def trainer_tokenizer(config: Path, cache: Path) -> Any:
    """The tokenizer the trainer builds for this manifest's model (its own chat template, pad token as the
    trainer sets it), without loading the model."""
    from align_trainer.main import load_job
    from align_trainer.models import Models, choose_device
    spec = load_job(config).spec
    device = choose_device(spec.model, spec.hyperparameters, gpus=spec.resources.gpus_per_node)
    return Models(spec.model, device, base_dir=config.parent, cache_dir=cache).tokenizer()


def check_rows(name: str, trainer: Any, examples: int, real: int) -> str:
    """What the side's trainer will train on: packed rows must hold every real token of the examples in fewer rows
    than examples; every other side one row per example. A bench that did not pack measures nothing."""
    rows = trainer.train_dataset
    tokens = sum(len(ids) for ids in rows["input_ids"])
    if name == "packed":
        if not (len(rows) < examples and tokens == real):
            raise SystemExit(f"packed side did not pack: {len(rows)} rows of {tokens} tokens from {examples} examples "
                             f"of {real}")
    elif len(rows) != examples:
        raise SystemExit(f"{name} side trains {len(rows)} rows, not the {examples} examples")
    return f"{examples} examples -> {len(rows)} rows, {tokens} tokens"


def eval_loss(model: Any, rows: Any) -> float:
    """Sum of token NLL over trained tokens / their number, one unpadded example at a time (no packing,
    no padding: the same measurement for both variants)."""
    import torch
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]], device=device)
            labels = torch.tensor([row["labels"]], device=device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = labels[:, 1:]
            mask = target != -100
            nll = torch.nn.functional.cross_entropy(logits[mask], target[mask], reduction="sum")
            total, count = total + float(nll), count + int(mask.sum())
    return total / count


def one_run(tmp: Path, train: Path, held_out: Any, *, base: str, packing: bool, batch: int, max_length: int,
            tag: str, padding_free: bool = False, accumulation: int = 1
            ) -> tuple[float, float, int, int, float, float, float, str]:
    """(seconds of trainer.train(), eval loss per real token, real tokens trained, optimizer steps, CPU seconds of
    trainer.train(): on a shared machine the CPU time says more than the wall time; peak RSS MiB during
    trainer.train() and its growth over the RSS just before; what the trainer holds (check_rows))."""
    import gc

    import torch
    from reference_memory import PeakSampler, rss_mb

    from align_trainer.algorithms import sft
    from align_trainer.main import build_context, load_job
    config = write_manifest(tmp / f"{tag}.yaml", train, base=base, packing=packing, batch=batch, max_length=max_length,
                            padding_free=padding_free, accumulation=accumulation)
    ctx = build_context(load_job(config), manifest=config, output=tmp / tag, data_kind=sft.DATA, metrics_port=None)
    trainer = sft.build_trainer(ctx)
    examples = sft.prepare(ctx.train_dataset, ctx.tokenizer, completion_only=ctx.hp.completion_only_loss,
                           max_length=max_length)["input_ids"]
    real = sum(len(ids) for ids in examples)
    held = check_rows(tag.rsplit("-", 1)[0], trainer, len(examples), real)
    torch.manual_seed(0)
    # the previous side's trainer and model go, and glibc hands their freed pages back, before this side's memory is
    # read: otherwise a later side trains in memory the first one left mapped and its growth reads as ~0
    gc.collect()
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    with PeakSampler() as sampler:
        out = trainer.train()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    loss = eval_loss(trainer.model, held_out)
    ctx.metrics.close()  # type: ignore[attr-defined]
    return seconds, loss, real, out.global_step, cpu, sampler.peak, sampler.peak - before, held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8, help="padded batch size (examples per step)")
    parser.add_argument("--model", default="builtin://tiny",
                        help="any spec.model.base; builtin://smollm2-135m-instruct for the real 135M model")
    parser.add_argument("--hidden", type=int, help="builtin://tiny only: hidden size (default 256; 64 with --layers 2 "
                                                   "is builtin://tiny itself)")
    parser.add_argument("--layers", type=int, help="builtin://tiny only: layers (default 4)")
    parser.add_argument("--held", type=int, default=48, help="held-out rows the loss is measured on")
    parser.add_argument("--sides", default="padded,packed,padding-free",
                        help="comma-separated: padded (always run: the reference), packed, padding-free, unbatched")
    args = parser.parse_args()
    sides = ["padded"] + [s for s in args.sides.split(",") if s != "padded"]
    unknown = set(sides) - {"padded", "packed", "padding-free", "unbatched"}
    if unknown:
        parser.error(f"unknown sides: {sorted(unknown)}")
    if args.model != "builtin://tiny" and (args.hidden or args.layers):
        parser.error("--hidden/--layers size builtin://tiny only")
    hidden, layers = args.hidden or 256, args.layers or 4
    load_before = os.getloadavg()[0]
    import torch
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from align_trainer.algorithms import sft
    from datasets import Dataset
    from transformers import AutoConfig

    words = corpus_words()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train, held = tmp / "train.jsonl", tmp / "held.jsonl"
        write_rows(train, args.rows, 1, words)
        write_rows(held, args.held, 2, words)
        base = model_dir(tmp, hidden, layers) if args.model == "builtin://tiny" else args.model
        probe = write_manifest(tmp / "probe.yaml", train, base=base, packing=False, batch=args.batch,
                               max_length=args.max_length)
        tokenizer = trainer_tokenizer(probe, tmp / "cache")
        from align_trainer.models import resolve_model
        config = AutoConfig.from_pretrained(resolve_model(base, base_dir=tmp, cache_dir=tmp / "cache"))
        held_out = sft.prepare(Dataset.from_list([json.loads(x) for x in held.read_text().splitlines()]), tokenizer,
                               completion_only=True, max_length=args.max_length)
        lengths = sorted(len(r) for r in sft.prepare(
            Dataset.from_list([json.loads(x) for x in train.read_text().splitlines()]), tokenizer,
            completion_only=True, max_length=args.max_length)["input_ids"])
        mean_len = sum(lengths) / len(lengths)
        # packed rows hold ~max_length tokens: as many rows as carry the padded batch's real tokens
        packed_batch = max(1, round(args.batch * mean_len / args.max_length))
        results: dict[str, list[tuple[float, float, int, int, float, float, float, str]]] = {s: [] for s in sides}
        for i in range(args.repeat):
            order = sides[i % len(sides):] + sides[:i % len(sides)]  # each side goes first in turn
            for name in order:
                packing = name == "packed"
                batch = packed_batch if packing else 1 if name == "unbatched" else args.batch
                r = one_run(tmp, train, held_out, base=base, packing=packing, batch=batch,
                            max_length=args.max_length, tag=f"{name}-{i}", padding_free=name == "padding-free",
                            accumulation=args.batch if name == "unbatched" else 1)
                results[name].append(r)
                print(f"run {i} {name}: {r[0]:.1f}s, {r[2] / r[0]:.0f} real tokens/s, {r[2] / r[4]:.0f} real tokens "
                      f"per CPU second, loss {r[1]:.4f}, {r[3]} steps, peak RSS {r[5]:.0f} MiB (+{r[6]:.0f} in "
                      f"training), {r[7]}", flush=True)
    shown = base if base.startswith("builtin://") else "builtin://tiny's architecture"
    print(f"model: {shown} (vocabulary {config.vocab_size}, hidden "
          f"{config.hidden_size}, {config.num_hidden_layers} layers), LoRA r=8, 1 epoch, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"rows: {args.rows}, tokens per row: min {lengths[0]} median {lengths[len(lengths) // 2]} mean "
          f"{mean_len:.0f} max {lengths[-1]} (maxLength {args.max_length}); padded batch {args.batch} examples, "
          f"packed batch {packed_batch} rows; load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    tps = {k: statistics.median(r[2] / r[0] for r in v) for k, v in results.items()}
    best = {k: max(r[2] / r[0] for r in v) for k, v in results.items()}
    loss = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    per_cpu = {k: statistics.median(r[2] / r[4] for r in v) for k, v in results.items()}
    peak = {k: min(r[5] for r in v) for k, v in results.items()}
    growth = {k: min(r[6] for r in v) for k, v in results.items()}
    for side in sides:
        print(f"{side}: median {tps[side]:.0f} real tokens/s, {per_cpu[side]:.0f} per CPU second; training peak RSS "
              f"{peak[side]:.0f} MiB (least of the runs), +{growth[side]:.0f} MiB over the RSS before train()")
    key = {"padded": "padded", "packed": "packed", "padding-free": "padding_free", "unbatched": "unbatched"}
    ratios = []
    for side in sides[1:]:
        print(f"{side}: ratio of best runs {best[side] / best['padded']:.2f}; ratio of real tokens per CPU second "
              f"{per_cpu[side] / per_cpu['padded']:.2f}; loss {side}/padded {loss[side] / loss['padded']:.4f}")
        name = "ratio" if side == "packed" else key[side] + "_ratio"
        ratios += [f"{name}={tps[side] / tps['padded']:.2f}",
                   f"{name.replace('ratio', 'cpu_ratio')}={per_cpu[side] / per_cpu['padded']:.2f}"]
    print("sft_packing: " + " ".join(ratios + [f"tokens_per_s_{key[s]}={tps[s]:.0f}" for s in sides]
                                     + [f"loss_{key[s]}={loss[s]:.4f}" for s in sides]
                                     + [f"peak_rss_mb_{key[s]}={peak[s]:.0f}" for s in sides]))

if __name__ == "__main__":
    main()
