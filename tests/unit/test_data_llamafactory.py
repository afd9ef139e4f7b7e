"""LLaMA-Factory's alpaca and sharegpt formats (SFT, ranking pairs, KTO), in its own file shapes: pretty-printed
JSON arrays as in its data/ folder (dpo_en_demo.json, kto_en_demo.json, alpaca_en_demo.json) and JSONL; its
dataset_info.json `columns` as `fields`, its `tags` as `tags`; auto-detection; errors naming file, line, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from align_api.data import DataSpec, Dataset
from align_trainer.data import load_for, parse_split
from align_trainer.errors import DataError
from align_trainer.formats import detect_format, parse_row
from align_trainer.runtime import DataKind

# The shapes of LLaMA-Factory 0.9.5's data/*.json demos (our own text: the demos' licences are not ours to ship).
ALPACA = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
ALPACA_FULL = {"instruction": "And now?", "input": "", "output": "7", "system": "Be brief.",
               "history": [["Add 1 and 1.", "2"], ["Add 2 and 2.", "4"]]}
ALPACA_PAIR = {"instruction": "Name a colour.", "input": "", "chosen": "Blue.", "rejected": "Seven."}
ALPACA_KTO = {"instruction": "Name a colour.", "output": "Blue.", "kto_tag": True}
SHAREGPT = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
                              {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}], "system": "Be kind."}
SHAREGPT_PAIR = {"conversations": [{"from": "human", "value": "Say something nice."}],  # dpo_en_demo.json
                 "chosen": {"from": "gpt", "value": "You are great."}, "rejected": {"from": "gpt", "value": "No."}}
SHAREGPT_KTO = {"messages": [{"content": "Which is right? (A) 4 (B) 5", "role": "user"},  # kto_en_demo.json
                             {"content": "A", "role": "assistant"}], "label": False}


def split(tmp_path: Path, rows: list[dict], **spec: object) -> list:  # type: ignore[type-arg]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")  # pretty-printed, as LLaMA-Factory ships them
    return parse_split(Dataset.model_validate({"uri": str(path), **spec}), base_dir=tmp_path,
                       cache_dir=tmp_path / "c", seed=0)


def test_alpaca_rows_become_conversations_pairs_kto_and_prompts() -> None:
    sft = parse_row("alpaca", ALPACA, "f:2")
    assert sft.type == "language_modeling"
    assert sft.data["messages"] == [{"role": "user", "content": "Add the numbers.\n2 and 3", "weight": 0},
                                    {"role": "assistant", "content": "5", "weight": 1}]
    full = parse_row("alpaca", ALPACA_FULL, "f:2").data["messages"]
    assert [(m["role"], m["content"], m["weight"]) for m in full] == [
        ("system", "Be brief.", 0), ("user", "Add 1 and 1.", 0), ("assistant", "2", 1), ("user", "Add 2 and 2.", 0),
        ("assistant", "4", 1), ("user", "And now?", 0), ("assistant", "7", 1)]  # history answers train, as in LF
    pair = parse_row("alpaca", ALPACA_PAIR, "f:2")
    assert pair.type == "preference" and pair.data == {
        "prompt": [{"role": "user", "content": "Name a colour."}],
        "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Seven."}]}
    kto = parse_row("alpaca", ALPACA_KTO, "f:2")
    assert kto.type == "unpaired" and kto.data["label"] is True
    assert kto.data["completion"] == [{"role": "assistant", "content": "Blue."}]
    prompt = parse_row("alpaca", {"instruction": "Solve 3x=9.", "answer": "3"}, "f:2")
    assert prompt.type == "prompt_only" and prompt.extra == {"answer": "3"}  # item fields stay for graders


def test_sharegpt_rows_become_conversations_pairs_and_kto() -> None:
    sft = parse_row("sharegpt", SHAREGPT, "f:2")
    assert [(m["role"], m["content"], m["weight"]) for m in sft.data["messages"]] == [
        ("system", "Be kind.", 0), ("user", "hi", 0), ("assistant", "hello", 1), ("user", "2+2?", 0), ("assistant", "4", 1)]
    leading = {"conversations": [{"from": "system", "value": "S"}, *SHAREGPT["conversations"][:2]], "system": "ignored"}
    assert parse_row("sharegpt", leading, "f:2").data["messages"][0] == {"role": "system", "content": "S", "weight": 0}
    pair = parse_row("sharegpt", SHAREGPT_PAIR, "f:2")
    assert pair.type == "preference" and pair.data["chosen"] == [{"role": "assistant", "content": "You are great."}]
    assert pair.data["prompt"] == [{"role": "user", "content": "Say something nice."}]
    kto = parse_row("sharegpt", SHAREGPT_KTO, "f:2")
    assert kto.type == "unpaired" and kto.data["label"] is False
    assert kto.data["prompt"] == [{"role": "user", "content": "Which is right? (A) 4 (B) 5"}]
    assert kto.data["completion"] == [{"role": "assistant", "content": "A"}]


@pytest.mark.parametrize("row, fmt", [
    (ALPACA, "alpaca"), (ALPACA_PAIR, "alpaca"), (ALPACA_KTO, "alpaca"), (SHAREGPT, "sharegpt"),
    (SHAREGPT_PAIR, "sharegpt"), (SHAREGPT_KTO, "sharegpt"),
    # unchanged: OpenAI chat and TRL rows are not taken for LLaMA-Factory ones
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "openai-chat"),
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, "trl"),
])
def test_auto_detects_llamafactory_rows(row: dict, fmt: str) -> None:
    assert detect_format(row, "f:1") == fmt


def test_dataset_info_columns_and_tags_map_over(tmp_path: Path) -> None:
    # dataset_info.json: {"columns": {"prompt": "question", "response": "answer", "system": "sys",
    # "history": "turns"}} and a sharegpt set with {"tags": {"role_tag": "speaker", ...}}
    row = {"question": "Why?", "answer": "Because.", "sys": "Explain.", "turns": [["Hi", "Hello"]]}
    records = split(tmp_path, [row], format="alpaca",
                    fields={"prompt": "question", "response": "answer", "system": "sys", "history": "turns"})
    assert [m["content"] for m in records[0].data["messages"]] == ["Explain.", "Hi", "Hello", "Why?", "Because."]
    convo = {"dialog": [{"speaker": "Q", "text": "hi"}, {"speaker": "A", "text": "yo"}], "ok": "true"}
    tags = {"role_tag": "speaker", "content_tag": "text", "user_tag": "Q", "assistant_tag": "A"}
    kto = split(tmp_path, [convo], format="sharegpt", fields={"messages": "dialog", "kto_tag": "ok"}, tags=tags)
    assert kto[0].type == "unpaired" and kto[0].data["label"] is True
    with pytest.raises(DataError, match=r"dialog\[0\]\.from: is required"):  # without the tags
        split(tmp_path, [convo], format="sharegpt", fields={"messages": "dialog"})
    auto = split(tmp_path, [row], fields={"prompt": "question", "response": "answer"})  # format: auto
    assert auto[0].type == "language_modeling" and auto[0].data["messages"][-1]["content"] == "Because."
    with pytest.raises(ValidationError, match="unknown tag 'speaker_tag'"):
        Dataset.model_validate({"uri": "x.json", "tags": {"speaker_tag": "x"}})


def test_auto_on_files_of_each_shape_trains_each_algorithm_kind(tmp_path: Path) -> None:
    def load(rows: list[dict], kind: DataKind):  # type: ignore[no-untyped-def]
        path = tmp_path / "set.json"
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
        return load_for(kind, DataSpec.model_validate({"train": {"uri": str(path)}}), base_dir=tmp_path,
                        cache_dir=tmp_path / "c", seed=0)[0]
    assert load([SHAREGPT_PAIR] * 3, DataKind.PREFERENCE).num_rows == 3
    assert load([ALPACA_PAIR] * 2, DataKind.UNPAIRED).num_rows == 4  # each pair: one good, one bad example
    kto = load([SHAREGPT_KTO, {**SHAREGPT_KTO, "label": True}], DataKind.UNPAIRED)
    assert kto["label"] == [False, True]
    with pytest.raises(DataError, match="use algorithm kto"):
        load([SHAREGPT_KTO], DataKind.PREFERENCE)
    online = load([ALPACA, ALPACA_FULL], DataKind.PROMPT_ONLY)
    assert online["answer"] == ["5", "7"] and online["prompt"][0] == [{"role": "user", "content": "Add the numbers.\n2 and 3"}]


@pytest.mark.parametrize("bad, fmt, error", [
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}, "sharegpt",
     r"field conversations\[1\]\.from: expected a assistant turn"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": "{}"}]}, "sharegpt",
     r"field conversations\[1\]\.from: 'function_call' turns .* not supported"),
    ({"conversations": [{"from": "human", "value": "a"}], "chosen": {"from": "gpt", "value": ""},
      "rejected": {"from": "gpt", "value": "x"}}, "sharegpt", r"field chosen: must be a non-empty string"),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}],
      "chosen": {"from": "gpt", "value": "c"}, "rejected": {"from": "gpt", "value": "d"}}, "sharegpt",
     r"field conversations\[1\]: a preference row's conversation must end with a user turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": "maybe"},
     "sharegpt", r"field label: must be a boolean"),
    ({"instruction": "", "input": "", "output": "x"}, "alpaca", r"field instruction: is required"),
    ({"instruction": "q", "output": 3}, "alpaca", r"field output: must be a non-empty string"),
    ({"instruction": "q", "output": "a", "history": [["only one"]]}, "alpaca", r"field history\[0\]: must be a pair"),
    ({"instruction": "q", "output": "a", "tools": "[{}]"}, "alpaca", r"field tools: function-calling"),
])
def test_bad_row_names_file_line_item_and_field(tmp_path: Path, bad: dict, fmt: str, error: str) -> None:
    good = ALPACA if fmt == "alpaca" else SHAREGPT
    with pytest.raises(DataError) as info:
        split(tmp_path, [good, good, bad], format=fmt)
    message = str(info.value)
    # the third item of the pretty-printed array: its line is where the editor finds it
    line = 1 + (json.dumps([good, good], indent=2).count("\n"))
    assert message.startswith(f"{tmp_path / 'data.json'}:{line} (item 3): "), message
    assert json.dumps([good, good, bad], indent=2).splitlines()[line - 1].strip() == "{"
    assert __import__("re").search(error, message), message


def test_jsonl_line_numbers_too(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(SHAREGPT_PAIR) + "\n\n" + json.dumps({**SHAREGPT_PAIR, "rejected": {"from": "human",
                                                                                                  "value": "x"}}) + "\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl:3: field rejected\.from: expected a assistant turn"):
        parse_split(Dataset(uri=str(path), format="sharegpt"), base_dir=tmp_path, cache_dir=tmp_path, seed=0)


def test_preflight_reads_the_formats_as_training_does(tmp_path: Path) -> None:
    from align_trainer.preflight import check_dataset
    rows = [{"dialog": [{"speaker": "Q", "text": "hi"}, {"speaker": "A", "text": "yo"}]}]
    (tmp_path / "d.json").write_text(json.dumps(rows), encoding="utf-8")
    spec = Dataset.model_validate({"uri": str(tmp_path / "d.json"), "format": "sharegpt", "fields": {"messages": "dialog"},
                                   "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "Q",
                                            "assistant_tag": "A"}})
    problems, converted, where = check_dataset("spec.data.train", spec, tmp_path, DataKind.PROMPT_ONLY)
    assert problems == [] and converted[0]["answer"] == "yo" and where == [f"{tmp_path / 'd.json'}:1 (item 1)"]
    bad = spec.model_copy(update={"tags": None})
    problems, _, _ = check_dataset("spec.data.train", bad, tmp_path, DataKind.PROMPT_ONLY)
    assert "field dialog[0].from: is required" in problems[0].message
