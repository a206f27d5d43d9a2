"""Selector: the last, model-free step of a seed's augmentation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

from agents.text import is_trivial_copy, normalize


class ScoredCandidate(NamedTuple):
    """A candidate the judge accepted. A NamedTuple (not a dataclass) because every graph checkpoint
    serialises all of them, and LangGraph's encoder handles tuples far faster than dataclasses."""

    text: str
    stage: str  # "paraphrase" or "synonym"
    base: str  # the sentence it derives from: itself for a paraphrase, its base for a substitution
    similarity: float


def select_samples(pool: Sequence[ScoredCandidate], seed: str, m: int) -> list[ScoredCandidate]:
    """Keep at most `m` accepted candidates, most similar first, spread across their bases.

    Candidates are grouped by the paraphrase (or seed) they come from; rounds take the best
    remaining candidate of every group, groups with the best candidates first. Copies of the seed
    and duplicates are dropped. Ties break on text so the choice is deterministic.
    """
    groups: dict[str, list[ScoredCandidate]] = defaultdict(list)
    seen = {normalize(seed)}
    for candidate in sorted(pool, key=lambda c: (-c.similarity, c.text)):
        key = normalize(candidate.text)
        if key in seen or is_trivial_copy(candidate.text, seed):
            continue
        seen.add(key)
        groups[normalize(candidate.base)].append(candidate)
    ordered = sorted(groups.values(), key=lambda g: (-g[0].similarity, g[0].text))
    chosen: list[ScoredCandidate] = []
    depth = 0
    while len(chosen) < m and any(depth < len(g) for g in ordered):
        round_ = [g[depth] for g in ordered if depth < len(g)]
        chosen.extend(sorted(round_, key=lambda c: (-c.similarity, c.text))[: m - len(chosen)])
        depth += 1
    return chosen
