"""Augmented samples (`samples.jsonl` of an augment run) as training inputs.

Only `seed_id` and `text` matter here; the other fields of an augment run's records (stage, scores,
models) are kept out of the way, so samples from older runs or other tools can be used as well. Files
in the CultureLLM authors' layout (`q_id`, `q_content`, as in data/reference/) are read too.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from storage.jsonl import read_jsonl_records


class SamplesFileError(ValueError):
    """A samples file that cannot be used; the message names the file and line."""


class AugmentedSample(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    seed_id: str = Field(validation_alias=AliasChoices("seed_id", "q_id"))
    text: str = Field(validation_alias=AliasChoices("text", "q_content"))

    @field_validator("seed_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        # The same spellings seed files use: 27, "27" or "Q27".
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            return value.strip().removeprefix("Q").removeprefix("q")
        return value

    @field_validator("seed_id", "text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return " ".join(value.split())


def load_samples(path: Path, seed_ids: Collection[str], seeds_path: Path) -> list[AugmentedSample]:
    """Read a samples file, refusing samples of seeds that the seed set does not hold."""
    samples: list[AugmentedSample] = []
    unknown: dict[str, int] = {}
    records = read_jsonl_records(path, AugmentedSample, kind="samples file", error=SamplesFileError)
    for number, sample in records:
        if sample.seed_id not in seed_ids:
            unknown.setdefault(sample.seed_id, number)
        samples.append(sample)
    if unknown:
        # One line for the whole file: a run made from another seed set is wrong everywhere at once.
        named = ", ".join(f"'{seed_id}' (line {line})" for seed_id, line in list(unknown.items())[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise SamplesFileError(f"{path}: seed_id {named}{more} not in the seed set {seeds_path}")
    return samples
