"""Python-grader throughput: the grader jail's pool (confined fork server, fresh state per call) vs spawn per call.

Both sides run the same grader under the same confinement (namespaces, new root, uid, rlimits, audit hook);
the baseline is the same pool with `max_calls=1`, so every call starts, confines and loads a new worker process
(`python -I`, imports included), the way a jail without a fork server would. Rounds alternate between the
two sides; each round grades --calls samples over --workers workers; evals/s is the median over rounds.

    python bench/grader_jail.py [--calls 200] [--rounds 3] [--workers 2]

Last line: `grader_jail: ratio=X` with X = evals/s (pool) / evals/s (spawn per call), for the numpy grader.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "trainer_image"), str(REPO / "api")]

from align_trainer.graders.jail import JailLimits, JailPool  # noqa: E402

GRADERS = {
    "stdlib": "import re\ndef grade(sample, item):\n"
              "    return float(re.sub(r'\\s+', ' ', sample['output_text']).strip() == item['answer'])\n",
    "numpy": "import numpy as np\ndef grade(sample, item):\n"
             "    a = np.frombuffer(sample['output_text'].encode(), dtype=np.uint8).astype(float)\n"
             "    b = np.frombuffer(item['answer'].encode(), dtype=np.uint8).astype(float)\n"
             "    n = min(len(a), len(b))\n"
             "    return float(np.mean(a[:n] == b[:n])) if n else 0.0\n",
}


def evals_per_second(pool: JailPool, source: str, calls: int) -> float:
    cases = [({"output_text": f"answer {k % 7}"}, {"answer": "answer 3"}) for k in range(calls)]
    start = time.perf_counter()
    results = pool.map(source, cases)
    elapsed = time.perf_counter() - start
    failed = [r for r in results if r.error is not None]
    if failed:
        raise SystemExit(f"grader failed in the bench: {failed[0].error}")
    return calls / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="samples per round (pool side)")
    parser.add_argument("--spawn-calls", type=int, default=20, help="samples per round (spawn-per-call side)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    pool = JailPool(JailLimits(timeout=30, workers=args.workers))
    spawn = JailPool(JailLimits(timeout=30, workers=args.workers, max_calls=1))
    ratio = 0.0
    try:
        for name, source in GRADERS.items():
            evals_per_second(pool, source, args.workers)  # load the grader and start the workers (untimed)
            pool_rates, spawn_rates = [], []
            for _ in range(args.rounds):
                pool_rates.append(evals_per_second(pool, source, args.calls))
                spawn_rates.append(evals_per_second(spawn, source, args.spawn_calls))
            fork, baseline = statistics.median(pool_rates), statistics.median(spawn_rates)
            ratio = fork / baseline
            print(f"{name:>6}: pool {fork:8.1f} evals/s  spawn-per-call {baseline:6.1f} evals/s  ratio {ratio:6.1f}  "
                  f"(rounds: pool {[round(r) for r in pool_rates]}, spawn {[round(r, 1) for r in spawn_rates]})")
        iso = pool.isolation
        print(f"isolation: filesystem={iso.get('filesystem')} proc={iso.get('proc')} "
              f"pid_namespace={iso.get('pid_namespace')} network_namespace={iso.get('network_namespace')}")
    finally:
        pool.close()
        spawn.close()
    print(f"grader_jail: ratio={ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
