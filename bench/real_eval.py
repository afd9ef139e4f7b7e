"""Held-out measurements for bench/real_model.py on a real chat model (base folder + optional LoRA adapter).

Every prompt is rendered with the model's own chat template, exactly as the trainer renders conversational rows
(TRL: completion = template(prompt + answer) minus template(prompt, generation prompt)), so the end-of-turn
token is part of each scored answer. Preference pairs are fitted as the trainer fits them: a long prompt is cut
from the left by the trainer's own align_trainer.truncation.fit_row (hyperparameters.maxLength / maxPromptLength),
so the policy is scored on the prompt it was trained on; then prompt + answer longer than `max_length` is cut at
the same token the trainer cuts it (TRL keeps the start).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load(base: Path, adapter: Path | None = None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, str(adapter))
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def _encode(tokenizer: Any, prompt: list[dict[str, str]], answer: str, max_length: int) -> tuple[list[int], int]:
    """(ids of prompt + answer cut to max_length, prompt length)."""
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
    assert full.startswith(head), "the chat template does not extend the prompt"
    p = tokenizer(head, add_special_tokens=False)["input_ids"]
    c = tokenizer(full[len(head):], add_special_tokens=False)["input_ids"]
    return (p + c)[:max_length], len(p)


def answer_logps(model: Any, tokenizer: Any, items: Sequence[tuple[list[dict[str, str]], str]], *,
                 max_length: int, batch_size: int = 8) -> list[tuple[float, int]]:
    """(sum of log p(answer token), answer tokens) for each (prompt messages, answer)."""
    import torch
    out: list[tuple[float, int]] = []
    for start in range(0, len(items), batch_size):
        enc = [_encode(tokenizer, p, a, max_length) for p, a in items[start:start + batch_size]]
        width = max(len(ids) for ids, _ in enc)
        ids = torch.full((len(enc), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(enc), width), dtype=torch.long)
        for i, (row, _) in enumerate(enc):
            ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for i, (row, plen) in enumerate(enc):
            tok = logp[i, plen - 1:len(row) - 1]
            out.append((float(tok.sum()), int(tok.numel())))
    return out


def sft_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, max_length: int) -> float:
    """Mean per-token NLL of the assistant answers of openai-chat rows (the SFT objective, completion only)."""
    scores = answer_logps(model, tokenizer, [(r["messages"][:-1], r["messages"][-1]["content"]) for r in rows],
                          max_length=max_length)
    return -sum(s for s, _ in scores) / sum(n for _, n in scores)


def fit_pair_prompt(tokenizer: Any, row: dict[str, Any], *, max_length: int, max_prompt_length: int | None,
                    report: Any = None) -> list[dict[str, str]]:
    """The prompt messages of an openai-preference row as the trainer trains on them: cut from the left by
    align_trainer.truncation.fit_row (the trainer's own code; its budget depends on both answers' lengths)."""
    from align_trainer.truncation import FitReport, fit_row
    trl = {"prompt": [dict(m) for m in row["input"]["messages"]],
           "chosen": [{"role": "assistant", "content": row["preferred_output"][0]["content"]}],
           "rejected": [{"role": "assistant", "content": row["non_preferred_output"][0]["content"]}]}
    return fit_row(tokenizer, trl, max_length, max_prompt_length,
                  FitReport() if report is None else report)["prompt"]


def pair_logps(model: Any, tokenizer: Any, rows: list[dict[str, Any]], *, max_length: int,
               max_prompt_length: int | None = None, report: Any = None) -> list[tuple[float, int, float, int]]:
    """(chosen logp, chosen tokens, rejected logp, rejected tokens) of openai-preference rows, each prompt cut from
    the left as the trainer cuts it (`fit_pair_prompt`; `report`: an align_trainer.truncation.FitReport counting
    the cut prompts)."""
    items = []
    for r in rows:
        prompt = fit_pair_prompt(tokenizer, r, max_length=max_length, max_prompt_length=max_prompt_length,
                                 report=report)
        items += [(prompt, r["preferred_output"][0]["content"]), (prompt, r["non_preferred_output"][0]["content"])]
    s = answer_logps(model, tokenizer, items, max_length=max_length)
    return [(s[i][0], s[i][1], s[i + 1][0], s[i + 1][1]) for i in range(0, len(s), 2)]


def preference_accuracy(policy: list[tuple[float, int, float, int]],
                        reference: list[tuple[float, int, float, int]] | None = None) -> dict[str, float]:
    """Held-out accuracies over the pairs whose prompt leaves answer tokens within max_length (`pairs`): `sum` = chosen has the higher total log-likelihood, `mean` = higher per-token
    log-likelihood (SimPO's implicit reward), and with a reference `implicit` = the DPO implicit reward
    log(pi/pi_ref) of chosen exceeds that of rejected (TRL's rewards/accuracies)."""
    keep = [i for i, (_, nc, _, nr) in enumerate(policy) if nc and nr]  # prompts that leave answer tokens
    policy = [policy[i] for i in keep]
    n = len(policy)
    out = {"sum": sum(c > r for c, _, r, _ in policy) / n,
           "mean": sum(c / nc > r / nr for c, nc, r, nr in policy) / n, "pairs": float(n)}
    if reference is not None:
        reference = [reference[i] for i in keep]
        out["implicit"] = sum((p[0] - q[0]) > (p[2] - q[2]) for p, q in zip(policy, reference)) / n
    return out


def reward_model_accuracy(adapter: Path, rows: list[dict[str, Any]], *, max_length: int | None = None) -> float:
    """Held-out ranking accuracy of a reward model written by `algorithm: reward` (the platform's own
    reward_model grader input and scores; `max_length`: each text cut from the left to that many tokens, as the
    grader's max_length does)."""
    from align_trainer.evaluation.scoring import reward_model_input, reward_model_scores
    from align_trainer.graders.reward_model import load_reward_model
    model, tokenizer = load_reward_model(f"file://{adapter}")
    texts = []
    for r in rows:
        for key in ("preferred_output", "non_preferred_output"):
            texts.append(reward_model_input(r["input"]["messages"], r[key], tokenizer))
    s = reward_model_scores(model, tokenizer, texts, max_length=max_length)
    return sum(s[i] > s[i + 1] for i in range(0, len(s), 2)) / len(rows)


def graded_answers(model: Any, tokenizer: Any, rows: list[dict[str, Any]], grader: dict[str, Any], *,
                   max_new_tokens: int, temperature: float = 0.0, batch_size: int = 16,
                   seed: int = 0) -> tuple[float, list[str], int]:
    """(mean reward, answers, samples with grader errors) of the model's answers to openai-rft rows, graded by
    the platform's grader (python graders in the jail). Greedy unless `temperature`."""
    import torch

    from align_api.graders import Grader
    from align_trainer import graders, online
    from pydantic import TypeAdapter
    scorer = graders.build(TypeAdapter(Grader).validate_python(grader))
    texts = [online.prompt_text(tokenizer, r["messages"]) for r in rows]
    torch.manual_seed(seed)
    answers: list[str] = []
    for start in range(0, len(texts), batch_size):
        answers += online.generate(model, tokenizer, texts[start:start + batch_size], max_new_tokens=max_new_tokens,
                                   temperature=temperature).texts
    try:
        results = scorer.grade_batch(rows, answers)
    finally:
        scorer.close()
    return sum(r.reward for r in results) / len(results), answers, sum(r.failed for r in results)
