"""The records a run reads and writes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Stage = Literal["paraphrase", "synonym"]


class Seed(BaseModel):
    """One WVS seed item as found in a seed file."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    q_id: str = Field(description="WVS question number, e.g. '27' for Q27.")
    q_content: str = Field(description="The statement or question itself.")
    topic: str = Field(default="", description="WVS section, e.g. 'SOCIAL VALUES'.")
    option: str = Field(default="", description="The answer scale as one string.")

    @field_validator("q_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # Seed files in the wild write the id as a number or as "Q27".
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str):
            return value.strip().removeprefix("Q").removeprefix("q")
        return value

    @field_validator("q_id", "q_content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class SampleRecord(BaseModel):
    """One kept sample: a line of samples.jsonl."""

    seed_id: str
    topic: str
    seed: str
    text: str
    stage: Stage
    similarity: float
    option: str
    generator: str
    judge: str
    base: str = Field(description="The sentence this one was derived from (the seed or a paraphrase).")
