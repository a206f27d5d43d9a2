"""State of the per-seed augmentation graph: input, working state and output kept apart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from agents.selector import ScoredCandidate
from storage.records import Seed


@dataclass(frozen=True)
class SeedStats:
    paraphrase_rounds: int = 0
    paraphrases_generated: int = 0
    paraphrases_accepted: int = 0
    paraphrases_rejected: int = 0
    paraphrases_guarded: int = 0  # dropped by the inversion guard before judging
    synonym_calls_failed: int = 0
    substitutions_generated: int = 0
    substitutions_accepted: int = 0
    substitutions_rejected: int = 0
    substitutions_guarded: int = 0


class JudgedCandidate(NamedTuple):
    """A candidate the judge scored, accepted or not (a NamedTuple for cheap checkpoints)."""

    text: str
    stage: str
    base: str
    similarity: float
    accepted: bool


@dataclass
class AugmentInput:
    seed: Seed


@dataclass
class AugmentState:
    seed: Seed
    # Stage 1: candidates waiting for the judge, and the paraphrases it accepted.
    pending: list[str] = field(default_factory=list)
    paraphrases: list[ScoredCandidate] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # every paraphrase text generated so far
    # Stage 2: substituted sentences waiting for the judge, and those it accepted.
    substitutions: list[ScoredCandidate] = field(default_factory=list)
    variants: list[ScoredCandidate] = field(default_factory=list)
    samples: list[ScoredCandidate] = field(default_factory=list)
    # Every candidate the judge scored, accepted or not: kept so `rejudge` can apply another judge.
    judged: list[JudgedCandidate] = field(default_factory=list)
    stats: SeedStats = field(default_factory=SeedStats)


@dataclass
class AugmentOutput:
    seed: Seed
    samples: list[ScoredCandidate]
    judged: list[JudgedCandidate]
    stats: SeedStats


# Everything a checkpoint of the graph holds besides builtins: the types it may revive.
CHECKPOINTED_TYPES: tuple[type, ...] = (AugmentInput, Seed, ScoredCandidate, JudgedCandidate, SeedStats)
# The candidate records, whose lists a checkpoint stores as plain rows (storage/checkpoints.py).
CHECKPOINTED_ROWS: tuple[type, ...] = (ScoredCandidate, JudgedCandidate)
