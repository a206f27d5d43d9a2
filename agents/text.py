"""Small text helpers shared by the agents."""

from __future__ import annotations

import re
from functools import lru_cache

_NON_WORD = re.compile(r"[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Case-, punctuation- and spacing-insensitive form used to detect copies and duplicates.

    Cached: the same candidate is compared at every stage (parse, substitution, selection)."""
    return _SPACES.sub(" ", _NON_WORD.sub(" ", text.casefold())).strip()


def is_trivial_copy(candidate: str, seed: str) -> bool:
    """True when the candidate differs from the seed only by case, punctuation or spacing."""
    return normalize(candidate) == normalize(seed)


def word_count(text: str) -> int:
    return len(normalize(text).split())
