"""A cheap lexical check for the meaning inversions that sentence embeddings score as near-identical.

"A university education is more important for a boy than for a girl" and its mirror image embed at
cosine 0.99 with all-MiniLM-L6-v2. Before any judge is asked, a candidate is dropped when it
- mentions both sides of an opposed pair the seed mentions (boy / girl, men / women, ...) in the
  other order, or
- flips the seed's negation (an odd number of negations more or fewer).
It errs on the side of dropping: a correct passive rewrite that swaps the order is lost too, which
costs a sample, not a wrong label. An LLM judge (`--judge llm:...`) catches what it misses.
"""

from __future__ import annotations

import re
from functools import lru_cache

from agents.substitutor import OPPOSITE

_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_NEGATIONS = frozenset({"not", "no", "never", "nor", "none", "nobody", "nothing", "neither", "cannot"})


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


def _negations(tokens: list[str]) -> int:
    return sum(1 for t in tokens if t in _NEGATIONS or t.endswith("n't"))


def _first_positions(tokens: list[str]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for index, token in enumerate(tokens):
        positions.setdefault(token, index)
    return positions


def inversion_reason(candidate: str, seed: str) -> str | None:
    """Why the candidate probably states the opposite of the seed, or None."""
    return _seed_profile(seed).reason(candidate)


class _SeedProfile:
    """What the guard needs to know about a seed, computed once per seed rather than per candidate."""

    def __init__(self, seed: str) -> None:
        tokens = _tokens(seed)
        at = _first_positions(tokens)
        # Only the opposed pairs whose both sides the seed mentions can be swapped.
        self.pairs = [
            (word, opposite, at[word] < at[opposite])
            for word, opposite in OPPOSITE.items()
            if word < opposite and word in at and opposite in at
        ]
        self.negation_parity = _negations(tokens) % 2

    def reason(self, candidate: str) -> str | None:
        tokens = _tokens(candidate)
        if self.pairs:
            at = _first_positions(tokens)
            for word, opposite, word_first in self.pairs:
                if word in at and opposite in at and (at[word] < at[opposite]) != word_first:
                    return f"swaps '{word}' and '{opposite}'"
        if self.negation_parity != _negations(tokens) % 2:
            return "flips the negation"
        return None


@lru_cache(maxsize=4096)
def _seed_profile(seed: str) -> _SeedProfile:
    return _SeedProfile(seed)
