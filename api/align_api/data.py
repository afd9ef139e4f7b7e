"""spec.data: training and evaluation datasets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .common import DataURI, SpecModel

DATA_FORMATS = ("auto", "openai-chat", "openai-preference", "openai-rft", "trl", "ranked-pair", "alpaca", "sharegpt")

#: Canonical column names a `fields` mapping may rename into.
CANONICAL_FIELDS = (
    "messages", "prompt", "completion", "chosen", "rejected", "label", "text",
    "response_1", "response_2", "preference", "answer", "input", "preferred_output", "non_preferred_output",
    # LLaMA-Factory's dataset_info.json `columns` keys (alpaca, sharegpt), so its mapping copies over unchanged
    "query", "response", "history", "system", "tools", "kto_tag",
)
#: LLaMA-Factory's dataset_info.json `tags` (sharegpt messages): which keys and role names a message uses.
SHAREGPT_TAGS = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag", "observation_tag", "function_tag")


class Dataset(SpecModel):
    """One dataset split."""

    uri: DataURI = Field(description="JSONL/JSON/Parquet/CSV file or folder: path, file://, s3://, pvc://claim/path or hf://org/name.")
    format: Literal[DATA_FORMATS] = Field(  # type: ignore[valid-type]
        default="auto",
        description="auto: detect from the first rows; openai-chat: {messages}; openai-preference: "
                    "{input, preferred_output, non_preferred_output}; openai-rft: {messages, ...item fields}; "
                    "trl: any TRL dataset type; ranked-pair: {question, response_1, response_2, overall_response}; "
                    "alpaca: LLaMA-Factory's {instruction, input, output | chosen, rejected | kto_tag, system, history}; "
                    "sharegpt: LLaMA-Factory's {conversations: [{from, value}], chosen, rejected | kto_tag, system}.")
    fields: dict[str, str] | None = Field(
        default=None,
        description="Rename columns to canonical names: {canonical: column}, e.g. {prompt: question, chosen: good}. "
                    "For alpaca/sharegpt these are LLaMA-Factory's dataset_info.json `columns` keys "
                    "(prompt, query, response, history, messages, system, tools, chosen, rejected, kto_tag).")
    tags: dict[str, str] | None = Field(
        default=None,
        description="sharegpt only: LLaMA-Factory's dataset_info.json `tags` (role_tag, content_tag, user_tag, "
                    "assistant_tag, system_tag, observation_tag, function_tag). Default: {from, value, human, gpt, "
                    "system} or {role, content, user, assistant, system}, whichever a message uses.")
    split: str = Field(default="train", max_length=64, description="Split name for hub datasets.")
    max_samples: int | None = Field(default=None, ge=1, description="Use at most this many rows (after shuffling with the seed).")

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for tag, name in (value or {}).items():
            if tag not in SHAREGPT_TAGS:
                raise ValueError(f"unknown tag {tag!r}; allowed: {', '.join(SHAREGPT_TAGS)}")
            if not name:
                raise ValueError(f"tags.{tag} must not be empty")
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        for canonical, column in value.items():
            if canonical not in CANONICAL_FIELDS:
                raise ValueError(f"unknown canonical field {canonical!r}; allowed: {', '.join(CANONICAL_FIELDS)}")
            if not column:
                raise ValueError(f"fields.{canonical} must name a column")
        return value


class DataSpec(SpecModel):
    """Training data and an optional evaluation split."""

    train: Dataset = Field(description="Training dataset.")
    eval: Dataset | None = Field(default=None, description="Evaluation dataset (held out); used for eval metrics and evaluation.")
    eval_fraction: float | None = Field(default=None, gt=0, lt=0.5,
                                        description="Hold out this fraction of train as eval when no eval split is given.")
