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
from typing import TYPE_CHECKING

from lemminflect import getAllLemmas

from agents.substitutor import OPPOSITE
from agents.text import FUNCTION_WORDS, KEY_WORDS, LIGHT_VERBS

if TYPE_CHECKING:
    from agents.thesaurus import Thesaurus

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


# Spellings of the same key word: a paraphrase may use either ("How often" for "How frequently").
_KEY_EQUIVALENTS = {
    "frequently": "often",
    "oftentimes": "often",
    "ought": "should",
    "nearly": "almost",
    "sure": "certain",
    "equally": "equal",
    "can't": "cannot",
}


def key_words(tokens: list[str]) -> frozenset[str]:
    """The polarity, modality, quantity and degree words of a text, spelling variants merged."""
    found = set()
    for token in tokens:
        if token in KEY_WORDS or token.endswith("n't"):
            found.add(_KEY_EQUIVALENTS.get(token, "not" if token.endswith("n't") else token))
    return frozenset(found)


def _content(tokens: list[str]) -> list[str]:
    return [
        t
        for t in tokens
        if len(t) > 1 and t not in FUNCTION_WORDS and t not in KEY_WORDS and t not in LIGHT_VERBS
    ]


@lru_cache(maxsize=65536)
def _lemmas(word: str) -> frozenset[str]:
    return frozenset({word, *(lemma for group in getAllLemmas(word).values() for lemma in group)})


class MeaningGuard:
    """Lexical checks that run before any judge, for candidates from any generator.

    - `inversion_reason`: swapped opposed words, flipped negation (see above);
    - the seed's polarity, modal, quantity and degree words must all be kept, and none added
      ("should" -> "could", "more" -> "less", "as it always has been");
    - no antonym of a seed word may appear that the seed does not use ("always right" -> "wrong");
    - `strict`: every content word of the candidate must match one of the seed (same lemma or a
      WordNet synonym) and the other way round. Paraphrases that add or drop content ("...and that's
      a very good one", "A boy's education is more important...") fail; structure may change. It
      is for generators whose rewrites cannot be trusted (the embedded 135M model).
    """

    def __init__(self, thesaurus: Thesaurus | None = None, *, strict: bool = False) -> None:
        if strict and thesaurus is None:
            raise ValueError("the strict meaning guard needs a thesaurus")
        self.thesaurus = thesaurus
        self.strict = strict

    def reason(self, candidate: str, seed: str) -> str | None:
        """Why the candidate probably does not mean what the seed means, or None."""
        inverted = inversion_reason(candidate, seed)
        if inverted:
            return inverted
        seed_tokens, tokens = _tokens(seed), _tokens(candidate)
        seed_keys, keys = key_words(seed_tokens), key_words(tokens)
        if keys != seed_keys:
            return f"changes the key words {', '.join(sorted(keys ^ seed_keys))}"
        seed_words = set(seed_tokens)
        for word in set(tokens) - seed_words:
            for original in seed_words:
                if OPPOSITE.get(original) == word or (
                    self.thesaurus is not None and word in self.thesaurus.antonyms(original)
                ):
                    return f"uses '{word}', an antonym of the seed's '{original}'"
        if self.strict:
            return self._unmatched(_content(tokens), _content(seed_tokens))
        return None

    def _matched(self, word: str, others: list[str]) -> bool:
        assert self.thesaurus is not None
        lemmas = _lemmas(word)
        return any(
            lemmas & _lemmas(other)
            or self.thesaurus.are_synonyms(word, other)
            or self.thesaurus.are_synonyms(other, word)
            for other in others
        )

    def _unmatched(self, words: list[str], seed_words: list[str]) -> str | None:
        for word in words:
            if not self._matched(word, seed_words):
                return f"adds '{word}', which matches no word of the seed"
        for word in seed_words:
            if not self._matched(word, words):
                return f"drops the seed's '{word}'"
        return None
