"""Cost of the residual-stream watch (align_trainer.numerics): a LoRA training step of builtin://tiny with and
without the forward hook on the final norm, interleaved step by step (alternating which side goes first).

    OMP_NUM_THREADS=1 python bench/residual_watch.py [--steps 200] [--batch 8] [--length 96]

Last line: `residual_watch: ratio=X` with X = median step time (watched) / median step time (plain).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any


def main() -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from align_trainer import builtin
    from align_trainer.numerics import ResidualWatch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(1)

    def make() -> Any:
        torch.manual_seed(0)
        return get_peft_model(builtin.build_model("tiny"), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))

    ids = torch.randint(0, 256, (args.batch, args.length))
    sides = {"plain": make(), "watched": make()}
    watch = ResidualWatch()
    watch.attach(sides["watched"])
    optimizers = {name: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
                  for name, m in sides.items()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for step in range(args.steps):
        for name in (("plain", "watched") if step % 2 else ("watched", "plain")):
            started = time.perf_counter()
            optimizers[name].zero_grad()
            sides[name](input_ids=ids, labels=ids).loss.backward()
            optimizers[name].step()
            times[name].append(time.perf_counter() - started)
        watch.read()  # what the metrics sink does at each log
    warm = args.steps // 10
    plain, watched = (statistics.median(times[n][warm:]) for n in ("plain", "watched"))
    print(f"median step: plain {plain * 1e3:.2f} ms, watched {watched * 1e3:.2f} ms")
    print(f"residual_watch: ratio={watched / plain:.3f}")


if __name__ == "__main__":
    main()
