"""RPO vs DPO on a synthetic preference set with known, varying quality gaps (tests/integration/rpo_support.py).

For each seed: the same 128 training pairs (gaps from nearly tied to far apart, rewards in chosen_reward /
rejected_reward) train dpo and rpo (each lossType) with the same settings on builtin://tiny; then every model
ranks 160 held-out near-equal pairs (gap 0.05..0.35 on a 0..3 scale, answers unseen in training) by
log-likelihood. The reference is the untrained model. Prints a markdown table (accuracy per seed and mean).

    OMP_NUM_THREADS=1 python bench/rpo_ranking.py [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RUNS = [("reference", None, {}), ("dpo (beta 0.5)", "dpo", {}), ("dpo (beta 0.1)", "dpo", {"beta": 0.1}),
        ("rpo bwd_kl", "rpo", {"lossType": "bwd_kl"}), ("rpo fwd_kl", "rpo", {"lossType": "fwd_kl"}),
        ("rpo sq", "rpo", {"lossType": "sq"})]


def main() -> None:
    import torch

    from tests.integration.rpo_support import job, make_task, ranking_accuracy, train, write_rows
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    table: dict[str, list[float]] = {name: [] for name, _, _ in RUNS}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for seed in args.seeds:
            rows, held_out = make_task(seed)
            data = write_rows(tmp / f"train-{seed}.jsonl", rows)
            for i, (name, algorithm, hp) in enumerate(RUNS):
                final = None if algorithm is None else \
                    train(tmp, f"run-{seed}-{i}", job(f"run-{seed}-{i}", algorithm, data, seed, **hp))
                table[name].append(ranking_accuracy(final, held_out))
                print(f"seed {seed} {name}: {table[name][-1]:.3f}", file=sys.stderr, flush=True)
    print("| model | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("| --- |" + " --- |" * (len(args.seeds) + 1))
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {sum(values) / len(values):.3f} |")


if __name__ == "__main__":
    main()
