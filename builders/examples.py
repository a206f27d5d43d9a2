"""Training examples: every seed, each of its augmented samples and each CulturePark opinion about it,
answered with its culture's label (an opinion's example gives the opinion as the label's reason)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from builders.labels import CultureLabel
from builders.opinions import opinion_answer
from builders.prompt import wvs_messages
from builders.samples import AugmentedSample
from builders.scales import OptionScale
from prompts import Message
from storage.records import Seed

Source = Literal["seed", "augmented", "culturepark"]
Split = Literal["train", "validation"]


class Example(BaseModel):
    """One chat example (system, user, assistant) with where it came from."""

    culture: str
    q_id: str
    source: Source
    text: str
    label: int
    messages: list[Message]
    split: Split = "train"

    @property
    def system(self) -> str:
        return self.messages[0]["content"]

    @property
    def user(self) -> str:
        return self.messages[1]["content"]

    @property
    def assistant(self) -> str:
        return self.messages[2]["content"]


@dataclass
class CultureSkips:
    """What a culture lost to questions none of its countries answered."""

    q_ids: list[str] = field(default_factory=list)
    seeds: int = 0
    augmented: int = 0
    culturepark: int = 0

    def counts(self) -> str:
        """'2 seed and 1 augmented', or '2 seed, 1 augmented and 3 culturepark' when opinions were lost
        too (a CulturePark run labels from the same answers, so that should not happen)."""
        if self.culturepark:
            return f"{self.seeds} seed, {self.augmented} augmented and {self.culturepark} culturepark"
        return f"{self.seeds} seed and {self.augmented} augmented"


@dataclass
class ExampleSet:
    examples: list[Example]
    skipped: dict[str, CultureSkips]
    duplicates: int


def sample_texts(
    seeds: Sequence[Seed], samples: Iterable[AugmentedSample]
) -> tuple[dict[str, list[str]], int]:
    """Distinct augmented texts per seed, sorted, and how many repeats were dropped.

    Sorting makes the output independent of the order in which an async augment run wrote its samples;
    a sample that repeats another, or its own seed, adds nothing to train on.
    """
    seen = {seed.q_id: {" ".join(seed.q_content.split()).casefold()} for seed in seeds}
    texts: dict[str, list[str]] = {seed.q_id: [] for seed in seeds}
    duplicates = 0
    for sample in samples:
        key = sample.text.casefold()
        if key in seen[sample.seed_id]:
            duplicates += 1
            continue
        seen[sample.seed_id].add(key)
        texts[sample.seed_id].append(sample.text)
    return {q_id: sorted(found) for q_id, found in texts.items()}, duplicates


def make_example(
    culture: str, q_id: str, source: Source, text: str, scale: OptionScale, label: int, answer: str = ""
) -> Example:
    """One example; the assistant answers with the label alone unless `answer` says more."""
    messages = [*wvs_messages(culture, text, scale), {"role": "assistant", "content": answer or str(label)}]
    return Example(culture=culture, q_id=q_id, source=source, text=text, label=label, messages=messages)


def build_examples(
    cultures: Sequence[str],
    seeds: Sequence[Seed],
    scales: Mapping[str, OptionScale],
    samples: Iterable[AugmentedSample],
    labels: Mapping[tuple[str, str], CultureLabel],
    opinions: Mapping[tuple[str, str], Sequence[str]] | None = None,
) -> ExampleSet:
    """Examples in a fixed order: culture as listed, seed as in the seed file, the seed before its
    samples, then the culture's CulturePark opinions about it (keyed by (culture, q_id)).

    CulturePark examples ask the seed itself: an opinion answers the seed question, not a rewrite."""
    opinions = opinions or {}
    texts, duplicates = sample_texts(seeds, samples)
    examples: list[Example] = []
    skipped = {culture: CultureSkips() for culture in cultures}
    for culture in cultures:
        for seed in seeds:
            label = labels[(culture, seed.q_id)].label
            augmented = texts[seed.q_id]
            reasons = opinions.get((culture, seed.q_id), [])
            if label is None:
                skipped[culture].q_ids.append(seed.q_id)
                skipped[culture].seeds += 1
                skipped[culture].augmented += len(augmented)
                skipped[culture].culturepark += len(reasons)
                continue
            scale = scales[seed.q_id]
            examples.append(make_example(culture, seed.q_id, "seed", seed.q_content, scale, label))
            examples.extend(
                make_example(culture, seed.q_id, "augmented", text, scale, label) for text in augmented
            )
            examples.extend(
                make_example(
                    culture,
                    seed.q_id,
                    "culturepark",
                    seed.q_content,
                    scale,
                    label,
                    opinion_answer(label, reason),
                )
                for reason in reasons
            )
    return ExampleSet(examples=examples, skipped=skipped, duplicates=duplicates)
