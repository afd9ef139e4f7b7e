"""Trainer data: formats, auto detection, field mapping, conversions, and errors naming file, line, field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from align_api.data import DataSpec
from align_trainer.data import load_for, parse_split
from align_trainer.errors import DataError
from align_trainer.formats import convert, detect_format, parse_row
from align_trainer.runtime import DataKind

from tests.conftest import REPO

EXAMPLES = REPO / "examples" / "data"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def load(kind: DataKind, train: dict, tmp_path: Path, **extra: object):  # type: ignore[no-untyped-def]
    spec = DataSpec.model_validate({"train": train, **extra})
    return load_for(kind, spec, base_dir=tmp_path, cache_dir=tmp_path / "cache", seed=0)


CHAT = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                     {"role": "assistant", "content": "a1", "weight": 0}, {"role": "user", "content": "again"},
                     {"role": "assistant", "content": [{"type": "text", "text": "a2"}]}]}
PREF = {"input": {"messages": [{"role": "user", "content": "q"}]},
        "preferred_output": [{"role": "assistant", "content": "good"}],
        "non_preferred_output": [{"role": "assistant", "content": "bad"}]}


@pytest.mark.parametrize("row, fmt", [
    (CHAT, "openai-chat"),
    (PREF, "openai-preference"),
    ({"messages": [{"role": "user", "content": "q"}], "answer": "4"}, "openai-rft"),
    ({"question": "q", "response_1": "a", "response_2": "b", "overall_response": 1}, "ranked-pair"),
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, "trl"),
    ({"text": "hello"}, "trl"),
])
def test_detect_format(row: dict, fmt: str) -> None:
    assert detect_format(row, "f:1") == fmt


def test_detect_format_unknown_names_fields() -> None:
    with pytest.raises(DataError, match=r"f:3: cannot detect.*\['q', 'x'\]"):
        detect_format({"q": 1, "x": 2}, "f:3")


def test_openai_chat_keeps_per_message_weights() -> None:
    record = parse_row("openai-chat", CHAT, "f:1")
    assert record is not None and record.type == "language_modeling"
    assert [m["weight"] for m in record.data["messages"]] == [0, 0, 0, 0, 1]
    assert record.data["messages"][4]["content"] == "a2"  # text parts joined


@pytest.mark.parametrize("row, field, message", [
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "must be one of"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
     "messages[1].weight", "must be 0 or 1"),
    ({"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]},
     "messages[0].weight", "only allowed on assistant"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]},
     "messages", "at least one assistant message with weight 1"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}, "messages[0].content", "is required"),
])
def test_openai_chat_errors_name_field(row: dict, field: str, message: str) -> None:
    with pytest.raises(DataError, match=rf"data.jsonl:7: field {re.escape(field)}: .*{message}"):
        parse_row("openai-chat", row, "data.jsonl:7")


def test_malformed_row_fails_with_file_line_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [PREF, PREF, {**PREF, "preferred_output": "oops"}])
    with pytest.raises(DataError) as err:
        load(DataKind.PREFERENCE, {"uri": "train.jsonl"}, tmp_path)
    assert f"{path}:3: field preferred_output: must be a non-empty list" in str(err.value)


def test_invalid_json_line(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_text(json.dumps(PREF) + "\n{not json\n")
    with pytest.raises(DataError, match=r"t.jsonl:2: invalid JSON"):
        load(DataKind.PREFERENCE, {"uri": "t.jsonl"}, tmp_path)


def test_preference_to_unpaired_for_kto(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", [PREF])
    train, evals = load(DataKind.UNPAIRED, {"uri": "p.jsonl"}, tmp_path)
    assert evals is None
    assert [(r["completion"][0]["content"], r["label"]) for r in train] == [("good", True), ("bad", False)]


def test_preference_to_sft_uses_chosen(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", [PREF])
    train, _ = load(DataKind.SFT, {"uri": "p.jsonl"}, tmp_path)
    assert train[0]["completion"] == [{"role": "assistant", "content": "good"}]


def test_unpaired_cannot_train_pairwise(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "u.jsonl", [{"prompt": "q", "completion": "a", "label": True}])
    with pytest.raises(DataError, match=r"u.jsonl:1: pairwise algorithms need preference pairs.*use algorithm kto"):
        load(DataKind.PREFERENCE, {"uri": "u.jsonl"}, tmp_path)


def test_ranked_pair_orders_and_skips_ties(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "r.jsonl", [
        {"question": "q1", "response_1": "a", "response_2": "b", "overall_response": 2},
        {"question": "q2", "response_1": "c", "response_2": "d", "overall_response": "1"},
        {"question": "q3", "response_1": "e", "response_2": "f", "overall_response": "tie"},
    ])
    train, _ = load(DataKind.PREFERENCE, {"uri": "r.jsonl", "format": "ranked-pair"}, tmp_path)
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in train] == [("q1", "b", "a"), ("q2", "c", "d")]


def test_ranked_pair_bad_preference(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "r.jsonl", [{"question": "q", "response_1": "a", "response_2": "b", "overall_response": 3}])
    with pytest.raises(DataError, match=r"r.jsonl:1: field overall_response: must be 1 or 2"):
        load(DataKind.PREFERENCE, {"uri": "r.jsonl"}, tmp_path)


def test_fields_mapping_and_missing_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "good": "a", "bad": "b"}])
    fields = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    train, _ = load(DataKind.PREFERENCE, {"uri": "c.jsonl", "fields": fields}, tmp_path)
    assert train[0] == {"prompt": "q", "chosen": "a", "rejected": "b"}
    with pytest.raises(DataError, match=r"c.jsonl:1: field 'nope' \(mapped to 'prompt'"):
        load(DataKind.PREFERENCE, {"uri": "c.jsonl", "fields": {**fields, "prompt": "nope"}}, tmp_path)


@pytest.mark.parametrize("row, kind, expected", [
    ({"text": "hello"}, DataKind.SFT, {"text": "hello"}),
    ({"prompt": "q", "completion": "a"}, DataKind.SFT, {"prompt": "q", "completion": "a"}),
    ({"prompt": "q"}, DataKind.PROMPT_ONLY, {"prompt": "q"}),
    ({"prompt": "q", "completion": "a", "label": "false"}, DataKind.UNPAIRED,
     {"prompt": "q", "completion": "a", "label": False}),
    ({"prompt": "q", "completions": ["s1", "s2"], "labels": [True, False]}, DataKind.UNPAIRED,
     {"prompt": "q", "completion": "s1s2", "label": False}),
    ({"chosen": "Q: x A: yes", "rejected": "Q: x A: no"}, DataKind.PREFERENCE,
     {"prompt": "Q: x A:", "chosen": " yes", "rejected": " no"}),  # implicit prompt extracted
    ({"prompt": "q", "completion": "4", "level": 1}, DataKind.PROMPT_ONLY, {"prompt": "q", "level": 1, "answer": "4", "completion": "4"}),
])
def test_trl_types(row: dict, kind: DataKind, expected: dict) -> None:
    record = parse_row("trl", row, "f:1")
    assert record is not None
    assert convert([record], kind) == [expected]


def test_rft_keeps_item_fields_for_graders() -> None:
    record = parse_row("openai-rft", {"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}, "f:1")
    assert convert([record], DataKind.PROMPT_ONLY) == [{"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4"}]


def test_mixed_styles_rejected() -> None:
    record = parse_row("trl", {"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"}, "f:4")
    with pytest.raises(DataError, match=r"f:4: fields chosen, prompt, rejected mix plain strings and message lists"):
        convert([record], DataKind.PREFERENCE)


def test_one_row_type_per_file(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "completion": "a"}])
    spec = DataSpec.model_validate({"train": {"uri": "m.jsonl", "format": "trl"}})
    with pytest.raises(DataError, match=r"m.jsonl:2: row is a prompt_completion row but the file started with preference"):
        parse_split(spec.train, base_dir=tmp_path, cache_dir=tmp_path, seed=0)


def test_eval_split_and_fraction(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", [PREF] * 10)
    write_jsonl(tmp_path / "e.jsonl", [PREF] * 3)
    train, evals = load(DataKind.PREFERENCE, {"uri": "p.jsonl"}, tmp_path, eval={"uri": "e.jsonl"})
    assert (len(train), len(evals)) == (10, 3)
    train, evals = load(DataKind.PREFERENCE, {"uri": "p.jsonl"}, tmp_path, evalFraction=0.2)
    assert (len(train), len(evals)) == (8, 2)
    train, _ = load(DataKind.PREFERENCE, {"uri": "p.jsonl", "maxSamples": 4}, tmp_path)
    assert len(train) == 4


def test_json_csv_and_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_text(json.dumps([{"prompt": "q1", "completion": "a1"}]))
    (tmp_path / "d" / "b.csv").write_text("prompt,completion\nq2,a2\n")
    train, _ = load(DataKind.SFT, {"uri": "./d"}, tmp_path)
    assert sorted(r["prompt"] for r in train) == ["q1", "q2"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope.jsonl.*does not exist"):
        load(DataKind.SFT, {"uri": "./nope.jsonl"}, tmp_path)


@pytest.mark.parametrize("name, kind", [
    ("sft.openai.jsonl", DataKind.SFT), ("preference.openai.jsonl", DataKind.PREFERENCE),
    ("preference.openai.jsonl", DataKind.UNPAIRED), ("pairs.ranked.jsonl", DataKind.PREFERENCE),
    ("preference.trl.jsonl", DataKind.PREFERENCE), ("unpaired.trl.jsonl", DataKind.UNPAIRED),
])
def test_shipped_examples_load(name: str, kind: DataKind) -> None:
    train, _ = load(kind, {"uri": name}, EXAMPLES)
    assert len(train) >= 32


def test_prompt_rows_reach_graders_with_their_nested_fields_as_written(tmp_path: Path) -> None:
    """A table gives nested fields one schema (each row's dicts gain the others' keys as None): IFBench's checker
    kwargs reached its grader as {"N": None, "language": "en", ...}. Graders get every row as the user wrote it,
    through TRL's column kwargs (GRPO/RLOO) and through our loops' rows."""
    from align_trainer.graders.rewards import GraderReward, row_items
    rows = [{"messages": [{"role": "user", "content": "q1"}], "kwargs": [{"N": 3}], "meta": {"id": 1},
             "answer": "x"},
            {"messages": [{"role": "user", "content": "q2"}], "kwargs": [{"language": "en"}, None],
             "meta": {"id": 2, "tag": "b"}, "answer": "y"}]
    train, _ = load(DataKind.PROMPT_ONLY, {"uri": str(write_jsonl(tmp_path / "rft.jsonl", rows))}, tmp_path)
    assert train[0]["kwargs"] == [{"N": 3, "language": None}]  # what the table holds
    expected = [{k: v for k, v in r.items()} for r in rows]
    assert row_items(list(train)) == expected

    class Recorder:
        name = "rec"
        health = None

        def grade_batch(self, items, answers, prompts=None):  # type: ignore[no-untyped-def]
            self.items = items
            return []

    recorder = Recorder()
    columns = {k: [row[k] for row in train] for k in train.column_names if k != "prompt"}
    GraderReward(recorder)(prompts=list(train["prompt"]), completions=["a", "b"], **columns)  # type: ignore[arg-type]
    assert recorder.items == expected


def test_prompt_rows_without_nested_fields_keep_their_columns_only(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "q"}], "answer": "4"}]
    train, _ = load(DataKind.PROMPT_ONLY, {"uri": str(write_jsonl(tmp_path / "rft.jsonl", rows))}, tmp_path)
    assert sorted(train.column_names) == ["answer", "prompt"]
