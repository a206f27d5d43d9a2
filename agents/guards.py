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

from agents.substitutor import OPPOSITE

_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
_NEGATIONS = frozenset({"not", "no", "never", "nor", "none", "nobody", "nothing", "neither", "cannot"})


def _tokens(text: str) -> list[str]:
    return [t.casefold() for t in _TOKEN.findall(text)]


def _negations(tokens: list[str]) -> int:
    return sum(t in _NEGATIONS or t.endswith("n't") for t in tokens)


def _first_positions(tokens: list[str]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for index, token in enumerate(tokens):
        positions.setdefault(token, index)
    return positions


def inversion_reason(candidate: str, seed: str) -> str | None:
    """Why the candidate probably states the opposite of the seed, or None."""
    seed_tokens, candidate_tokens = _tokens(seed), _tokens(candidate)
    seed_at, candidate_at = _first_positions(seed_tokens), _first_positions(candidate_tokens)
    for word, opposite in OPPOSITE.items():
        both_present = word < opposite and all(w in seed_at and w in candidate_at for w in (word, opposite))
        if both_present and (seed_at[word] < seed_at[opposite]) != (
            candidate_at[word] < candidate_at[opposite]
        ):
            return f"swaps '{word}' and '{opposite}'"
    if _negations(seed_tokens) % 2 != _negations(candidate_tokens) % 2:
        return "flips the negation"
    return None
