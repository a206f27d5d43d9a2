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


Verdict = Literal["entail", "contradict", "unrelated"]


class OpinionRecord(BaseModel):
    """One line of a CulturePark run's opinions.jsonl: an opinion a culture's speaker voiced that the
    verifier found to agree with the culture's attitude (as voiced, or after one rewrite)."""

    culture: str
    seed_id: str
    seed: str = Field(description="The WVS statement or question discussed.")
    option: str = Field(description="The seed's answer scale as one string.")
    label: int = Field(description="The culture's answer code (the dataset builder's label).")
    attitude: str = Field(description="The attitude the opinion was verified against, as a sentence.")
    opinion: str = Field(description="A self-contained first-person sentence.")
    speaker: str = Field(description="Name of the persona who voiced it.")
    verdict: Verdict = Field(description="The verifier's first verdict on the opinion as extracted.")
    rewritten: bool = Field(description="True when the kept text is the verified rewrite of a contradiction.")
    original: str | None = Field(default=None, description="The extracted text, when it was rewritten.")
    cluster: int = Field(description="The k-means cluster (per culture and seed) it represents.")
    generator: str
    verifier: str


class DialogueTurn(BaseModel):
    speaker: str
    text: str


class DialogueRecord(BaseModel):
    """One line of dialogues.jsonl: a whole CulturePark conversation about one seed."""

    culture: str
    seed_id: str
    seed: str
    mode: Literal["in", "cross"]
    style: Literal["guided", "free"]
    personas: list[dict[str, str | bool]]
    turns: list[DialogueTurn]
    generator: str
