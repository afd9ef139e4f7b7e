"""Rollout throughput: our generation path (`online.generate`, used by ppo, reft, rlaif and tpo) against TRL's
GRPOTrainer generation (`_generate`: chat template, tokenization, its transformers generation path and
decoding) on the same PEFT model object, the
same prompts (each repeated numGenerations times, as both do) and the same settings.

Both sides sample with the same seed; tokens/s counts completion tokens up to and including the first EOS.
The sides alternate; the ratio is of the medians.

    python bench/rollouts.py [--prompts 8] [--generations 4] [--new-tokens 64] [--repeat 5] [--hidden 64 --layers 2]
    python bench/rollouts.py --model builtin://smollm2-135m-instruct ...   # any spec.model.base instead

Last line: `rollouts: ratio=X ours_tokens_per_s=... trl_tokens_per_s=...` with X = ours / TRL (tokens/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
PROMPTS = REPO / "examples" / "data" / "rft.openai.jsonl"


def load_model(tmp: Path, hidden: int, layers: int, base: str | None = None) -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align_trainer import builtin
    if base is not None:
        from align_trainer.models import resolve_model
        path = Path(resolve_model(base, base_dir=REPO, cache_dir=tmp / "cache"))
    elif hidden == 64 and layers == 2:
        path = builtin.materialize("tiny")
    else:
        path = tmp / "model"
        heads = max(1, hidden // 64)
        builtin.build_model("tiny", hidden_size=hidden, intermediate_size=-(-hidden * 8 // 3 // 16) * 16,
                            num_hidden_layers=layers, num_attention_heads=heads,
                            num_key_value_heads=heads).save_pretrained(path)
        builtin.build_tokenizer().save_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora), AutoTokenizer.from_pretrained(path)


def timed(fn: Callable[[], int], seed: int) -> tuple[float, int]:
    import torch
    torch.manual_seed(seed)
    started = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64, help="hidden size (64 with --layers 2 = builtin://tiny)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--model",
                        help="a spec.model.base (e.g. builtin://smollm2-135m-instruct) instead of --hidden/--layers")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from align_trainer import online

    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines()][: args.prompts]
    prompts = [r["messages"] for r in rows]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model, tokenizer = load_model(tmp, args.hidden, args.layers, args.model)
        n = len(prompts) * args.generations
        config = GRPOConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=n,
                            num_generations=args.generations, max_completion_length=args.new_tokens,
                            temperature=args.temperature, top_p=1.0, use_cpu=True, bf16=False, report_to="none",
                            disable_tqdm=True, max_steps=1)
        trainer = GRPOTrainer(model=model, reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
                              args=config, train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
                              processing_class=tokenizer)
        repeated = [p for p in prompts for _ in range(args.generations)]  # both samplers repeat each prompt

        def ours() -> int:  # chat template -> tokens -> completions -> texts, as the loops call it
            texts = [online.prompt_text(tokenizer, p) for p in repeated]
            rollout = online.generate(trainer.model, tokenizer, texts, max_new_tokens=args.new_tokens,
                                      temperature=args.temperature, top_p=1.0)
            return int(rollout.completion_mask.sum())

        def trl() -> int:  # the same span in TRL: template, tokenize, generate, decode (+ its length stats)
            _, completion_ids, *_ = trainer._generate(repeated)
            return sum(len(c) for c in completion_ids)

        ours(), trl()  # warm-up (first-call allocations) for both, untimed
        times: dict[str, list[tuple[float, int]]] = {"ours": [], "trl": []}
        for i in range(args.repeat):
            order = [("ours", ours), ("trl", trl)] if i % 2 == 0 else [("trl", trl), ("ours", ours)]
            for name, fn in order:
                times[name].append(timed(fn, seed=i))
    rate = {k: [tokens / seconds for seconds, tokens in v] for k, v in times.items()}
    shape = args.model or f"builtin tiny architecture hidden {args.hidden}, {args.layers} layers"
    print(f"model: {shape} + LoRA r=8; {len(prompts)} "
          f"prompts x {args.generations} generations, {args.new_tokens} new tokens, temperature {args.temperature}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, load average {os.getloadavg()[0]:.1f}")
    for k in ("ours", "trl"):
        print(f"{k:5s} tokens/s: " + " ".join(f"{r:.0f}" for r in rate[k]) +
              f"  median {statistics.median(rate[k]):.0f}  best {max(rate[k]):.0f}  "
              f"(tokens per run {statistics.median(t for _, t in times[k]):.0f})")
    med = {k: statistics.median(v) for k, v in rate.items()}
    import resource
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"ratio of best runs: {max(rate['ours']) / max(rate['trl']):.3f}")
    print(f"rollouts: ratio={med['ours'] / med['trl']:.3f} ours_tokens_per_s={med['ours']:.0f} "
          f"trl_tokens_per_s={med['trl']:.0f}")


if __name__ == "__main__":
    main()
