"""TPO with a thought warm-up and RLAIF in preference mode, each on builtin://tiny against the fake OpenAI
judge of the tests (tests/integration/rl_support.JudgeServer: the share of lowercase letters in the answer, a
prompt-INDEPENDENT property; builtin://tiny cannot learn prompt-dependent answers in this budget).

Per seed, on held-out prompts (examples/data/tpo.thoughts.eval.jsonl and prompts.eval.jsonl, words unseen in training):
  tpo:   judged answer score before training, after the warm-up, after each round; share of answers with a
         thought; Monte-Carlo KL(pi || pi_ref) per completion at the sampling temperature (0.1)
  rlaif: the reward model's accuracy on the initial policy's held-out judge-labelled pairs (0.5 = chance),
         judge score before and after PPO on the reward model, PPO's last objective/kl; and, as a control,
         the same PPO job on the judge itself (feedback: direct)
Jobs: tests/integration/test_rl_thoughts.THINKING_HP and test_rl_rlaif_preference.PREFERENCE_HP.

    OMP_NUM_THREADS=1 python bench/tpo_rlaif.py [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def run_job(tmp: Path, algorithm: str, train: str, heldout: str, hp: dict[str, Any], judge: Any) -> list[dict[str, Any]]:
    from align_trainer.main import run
    from tests.integration.trainer_support import manifest, read_metrics
    config = manifest(tmp, algorithm, algorithm, train, eval_=heldout, hp=hp, grader=judge.grader())
    os.environ["ALIGN_OUTPUT_DIR"] = str(tmp / "out")
    assert run(["--config", str(config), "--metrics-port", "-1"]) == 0, algorithm
    return read_metrics(tmp / "out")


def last(records: list[dict[str, Any]], key: str) -> float:
    return [r[key] for r in records if key in r][-1]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def main() -> None:
    import torch

    from tests.integration.rl_support import JudgeServer
    from tests.integration.test_rl_rlaif_preference import PREFERENCE_HP
    from tests.integration.test_rl_thoughts import THINKING_HP
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    seeds = parser.parse_args().seeds
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    tpo_rows, rlaif_rows = [], []
    for seed in seeds:
        judge = JudgeServer()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_job(Path(tmp), "tpo", "tpo.thoughts.jsonl", "tpo.thoughts.eval.jsonl", {**THINKING_HP, "seed": seed}, judge)
                warm = next(x for x in r if "tpo/warmup_loss" in x)
                tpo_rows.append({"initial": warm["tpo/initial_heldout_reward"],
                                 "initial_thought": warm["tpo/initial_heldout_with_thought"],
                                 "warmup": warm["tpo/warmup_heldout_reward"],
                                 "warmup_thought": warm["tpo/warmup_with_thought"],
                                 "warmup_kl": warm["tpo/warmup_heldout_kl"],
                                 "rounds": [x["tpo/heldout_reward"] for x in r if "tpo/heldout_reward" in x],
                                 "thought": min(x["tpo/heldout_with_thought"] for x in r if "tpo/heldout_with_thought" in x),
                                 "kl": last(r, "tpo/heldout_kl")})
            with tempfile.TemporaryDirectory() as tmp:
                r = run_job(Path(tmp), "rlaif", "rft.openai.jsonl", "prompts.eval.jsonl", {**PREFERENCE_HP, "seed": seed}, judge)
                rlaif_rows.append({"rm_acc": last(r, "rlaif/rm_heldout_accuracy"), "pairs": last(r, "rlaif/heldout_pairs"),
                                   "rm_train_acc": last(r, "rlaif/rm_accuracy"),
                                   "initial": last(r, "rlaif/initial_heldout_score"),
                                   "final": last(r, "rlaif/final_heldout_score"), "kl": last(r, "objective/kl")})
            with tempfile.TemporaryDirectory() as tmp:  # control: the same PPO on the judge itself (direct)
                direct = {k: v for k, v in PREFERENCE_HP.items() if not k.startswith("rewardModel")}
                r = run_job(Path(tmp), "rlaif", "rft.openai.jsonl", "prompts.eval.jsonl",
                            {**direct, "feedback": "direct", "seed": seed}, judge)
                rlaif_rows[-1].update(direct_initial=last(r, "rlaif/initial_heldout_score"),
                                      direct_final=last(r, "rlaif/final_heldout_score"), direct_kl=last(r, "objective/kl"))
        finally:
            judge.close()
        print(f"seed {seed}: tpo {tpo_rows[-1]}\n        rlaif {rlaif_rows[-1]}", flush=True)

    print("\nTPO (held-out judged answer score; thought share; KL to the reference per completion)\n")
    print("| seed | initial | with thought | after warm-up | with thought | " +
          " | ".join(f"round {i + 1}" for i in range(len(tpo_rows[0]["rounds"]))) + " | min thought share in rounds | KL after warm-up | KL at the end |")
    print("|---" * (8 + len(tpo_rows[0]["rounds"])) + "|")
    for seed, t in zip(seeds, tpo_rows):
        print(f"| {seed} | {t['initial']:.3f} | {t['initial_thought']:.2f} | {t['warmup']:.3f} | {t['warmup_thought']:.2f} | " +
              " | ".join(f"{x:.3f}" for x in t["rounds"]) + f" | {t['thought']:.2f} | {t['warmup_kl']:.1f} | {t['kl']:.1f} |")
    print(f"| mean | {mean([t['initial'] for t in tpo_rows]):.3f} | | {mean([t['warmup'] for t in tpo_rows]):.3f} | | " +
          " | ".join(f"{mean([t['rounds'][i] for t in tpo_rows]):.3f}" for i in range(len(tpo_rows[0]["rounds"]))) + " | | | |")
    print("\nRLAIF preference (reward model on held-out judge-labelled pairs; held-out judge score)\n")
    print("| seed | RM train accuracy | RM held-out accuracy (pairs) | judge score initial | after PPO on the RM | objective/kl | control: after PPO on the judge (direct) | objective/kl |")
    print("|---|---|---|---|---|---|---|---|")
    for seed, x in zip(seeds, rlaif_rows):
        print(f"| {seed} | {x['rm_train_acc']:.3f} | {x['rm_acc']:.3f} ({x['pairs']:.0f}) | {x['initial']:.3f} | {x['final']:.3f} | "
              f"{x['kl']:.3f} | {x['direct_initial']:.3f} -> {x['direct_final']:.3f} | {x['direct_kl']:.3f} |")
    print(f"| mean | {mean([x['rm_train_acc'] for x in rlaif_rows]):.3f} | {mean([x['rm_acc'] for x in rlaif_rows]):.3f} | "
          f"{mean([x['initial'] for x in rlaif_rows]):.3f} | {mean([x['final'] for x in rlaif_rows]):.3f} | {mean([x['kl'] for x in rlaif_rows]):.3f} | "
          f"{mean([x['direct_initial'] for x in rlaif_rows]):.3f} -> {mean([x['direct_final'] for x in rlaif_rows]):.3f} | {mean([x['direct_kl'] for x in rlaif_rows]):.3f} |")
    print("tpo_rlaif: " + " ".join([
        f"tpo_initial={mean([t['initial'] for t in tpo_rows]):.3f}",
        f"tpo_warmup={mean([t['warmup'] for t in tpo_rows]):.3f}",
        f"tpo_final={mean([t['rounds'][-1] for t in tpo_rows]):.3f}",
        f"tpo_min_thought={min(t['thought'] for t in tpo_rows):.2f}",
        f"tpo_kl={mean([t['kl'] for t in tpo_rows]):.1f}",
        f"rlaif_rm_heldout_acc={mean([x['rm_acc'] for x in rlaif_rows]):.3f}",
        f"rlaif_initial={mean([x['initial'] for x in rlaif_rows]):.3f}",
        f"rlaif_final={mean([x['final'] for x in rlaif_rows]):.3f}",
        f"rlaif_kl={mean([x['kl'] for x in rlaif_rows]):.3f}",
        f"rlaif_direct_final={mean([x['direct_final'] for x in rlaif_rows]):.3f}", f"seeds={len(seeds)}"]))


if __name__ == "__main__":
    main()
