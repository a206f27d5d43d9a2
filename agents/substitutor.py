"""Synonym substitutor (CultureLLM stage 2): one structured call per sentence, then pure substitution.

The original scripts asked the model once per word. Here one call returns every content word of the
sentence with its synonyms (`prompts.SynonymTable`), and the candidate sentences are built locally:
fewer calls, the same data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import zip_longest
from typing import TYPE_CHECKING

from pydantic import ValidationError

import prompts
from agents.json_answers import MalformedOutput, load_json_answer
from agents.providers.chat import AnswerSchema, answer_schema
from agents.text import FRAME_WORDS, FUNCTION_WORDS, KEY_WORDS, LIGHT_VERBS, normalize

if TYPE_CHECKING:
    from agents.thesaurus import Thesaurus

# Letters, with single spaces, hyphens or apostrophes between them ("right-wing", "men's").
_SYNONYM_SHAPE = re.compile(r"^[^\W\d_]+(?:[ '\-][^\W\d_]+)*$", re.UNICODE)
_MAX_SYNONYM_WORDS = 3

# Function words, the words that carry polarity, modality and quantity, light verbs and the survey's
# frames are never replaced: swapping "never" for "always", "more" for "less" or "terms" for
# "adjectives" is how a substitution changes what a survey statement asks.
PROTECTED_WORDS = FUNCTION_WORDS | KEY_WORDS | LIGHT_VERBS | FRAME_WORDS


_WORD = re.compile(r"[^\W\d_]+(?:['\-][^\W\d_]+)*", re.UNICODE)
_MAX_SYNONYM_CHARS = 32


def content_words(sentence: str) -> list[str]:
    """The words of a sentence that may be replaced, in order of appearance, without repeats."""
    return list(_content_words(sentence))


@lru_cache(maxsize=4096)  # the prompt and the answer schema of a sentence both need them
def _content_words(sentence: str) -> tuple[str, ...]:
    found: dict[str, str] = {}
    for match in _WORD.finditer(sentence):
        word = match.group(0)
        if len(word) > 1 and word.casefold() not in PROTECTED_WORDS:
            found.setdefault(word.casefold(), word)
    return tuple(found.values())


def render_synonym_request(sentence: str, max_synonyms: int) -> list[prompts.Message]:
    return prompts.template(prompts.SYNONYMS).render(
        sentence=sentence, max_synonyms=max_synonyms, words=content_words(sentence)
    )


@lru_cache(maxsize=4096)
def synonym_schema(sentence: str, max_synonyms: int) -> AnswerSchema:
    """The answer schema for one sentence, with `word` restricted to the sentence's content words.

    Providers with constrained decoding (llama.cpp grammars, OpenAI structured outputs) then cannot
    answer with phrases or words that are not in the sentence; the answer is validated as the
    general `prompts.SynonymTable`. Cached: a retry asks with the same schema.
    """
    words = content_words(sentence)
    if not words:
        return answer_schema(prompts.SynonymTable)
    entry = {
        "type": "object",
        "title": "WordSynonyms",
        "properties": {
            "word": {
                "type": "string",
                "title": "Word",
                "enum": words,
                "description": "A content word of the sentence.",
            },
            "synonyms": {
                "type": "array",
                "title": "Synonyms",
                "items": {"type": "string", "minLength": 2, "maxLength": _MAX_SYNONYM_CHARS},
                "maxItems": max_synonyms,
                "description": "Replacements with the same meaning.",
            },
        },
        "required": ["word", "synonyms"],
    }
    table = {
        "type": "object",
        "title": "SynonymTable",
        "$defs": {"WordSynonyms": entry},
        "properties": {
            "words": {
                "type": "array",
                "title": "Words",
                "items": {"$ref": "#/$defs/WordSynonyms"},
                "maxItems": len(words),
            }
        },
        "required": ["words"],
    }
    return AnswerSchema(name="SynonymTable", json_schema=table, model=prompts.SynonymTable)


def _entries(data: object) -> list[object]:
    if isinstance(data, dict) and isinstance(data.get("words"), list):
        return data["words"]
    if isinstance(data, list):
        return data
    if isinstance(data, dict):  # {"word": ["syn", ...]} is a common small-model shape
        return [{"word": k, "synonyms": v} for k, v in data.items() if isinstance(v, list)]
    raise MalformedOutput("JSON answer is neither a word list nor a word table")


# One `{"word": ..., "synonyms": [...]}` entry, found even inside JSON whose brackets do not balance.
_ENTRY = re.compile(r'"word"\s*:\s*"([^"]{1,80})"\s*,\s*"synonyms"\s*:\s*\[([^\]{}]*)')
_STRING = re.compile(r'"([^"]{1,80})"')


def _salvage_entries(raw: str) -> list[object]:
    return [{"word": w, "synonyms": _STRING.findall(body)} for w, body in _ENTRY.findall(raw or "")]


def parse_synonym_table(raw: str, *, max_synonyms: int = 5) -> prompts.SynonymTable:
    """Parse the substitutor's answer, keeping every well-formed entry and skipping the rest.

    Small models often break the JSON (an unclosed bracket, a stray key); the entries before and
    after the damage are still recovered.
    """
    try:
        entries = _entries(load_json_answer(raw))
    except MalformedOutput:
        entries = _salvage_entries(raw)
    words: list[prompts.WordSynonyms] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        synonyms = entry.get("synonyms")
        if isinstance(synonyms, str):
            synonyms = [synonyms]
        if not isinstance(synonyms, list):
            continue
        clean = [s.strip() for s in synonyms if isinstance(s, str) and s.strip()][:max_synonyms]
        try:
            words.append(prompts.WordSynonyms(word=str(entry.get("word", "")).strip(), synonyms=clean))
        except ValidationError:
            continue
    if not words:
        # An empty table is as useless as garbage: asking again may give words.
        raise MalformedOutput("the answer lists no word with synonyms")
    return prompts.SynonymTable(words=words[:16])


# Decides whether a proposed replacement is a synonym of the word (e.g. `Thesaurus.are_synonyms`).
SynonymCheck = Callable[[str, str], bool]


def parse_substitutions(
    raw: str,
    sentence: str,
    *,
    max_synonyms: int,
    max_candidates: int,
    check: SynonymCheck | None = None,
) -> list[Substitution]:
    """The substitutions an answer yields for `sentence`; an answer that yields none is malformed,
    so the resilience layer asks again (for the local model, under a grammar)."""
    table = parse_synonym_table(raw, max_synonyms=max_synonyms)
    substitutions = substitute(sentence, table, max_candidates=max_candidates, check=check)
    if not substitutions:
        raise MalformedOutput("no listed word of the sentence has a usable synonym")
    return substitutions


@dataclass(frozen=True)
class Substitution:
    text: str
    word: str
    synonym: str


def _match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        # An acronym's synonym is a plain word ("TV" -> "television"), not "TELEVISION"; a word in
        # capitals for emphasis ("MEN") stays in capitals.
        acronym = len(template) == 2 or not any(c in "AEIOU" for c in template)
        return word if acronym and len(word) > len(template) else word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word if word[:1].islower() else word[:1].lower() + word[1:]


@lru_cache(maxsize=4096)
def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w'-]){re.escape(word)}(?![\w'-])", re.IGNORECASE)


# Pairs a thesaurus must never offer for each other in survey items: swapping them turns a statement
# into its opposite while embeddings still score the two sentences as near-identical.
_OPPOSITES = [
    ("man", "woman"),
    ("men", "women"),
    ("male", "female"),
    ("males", "females"),
    ("boy", "girl"),
    ("boys", "girls"),
    ("husband", "wife"),
    ("father", "mother"),
    ("son", "daughter"),
    ("better", "worse"),
    ("best", "worst"),
    ("good", "bad"),
    ("more", "less"),
    ("most", "least"),
    ("agree", "disagree"),
    ("always", "never"),
    ("rich", "poor"),
    ("important", "unimportant"),
    ("justifiable", "unjustifiable"),
    ("right", "wrong"),
    ("high", "low"),
    ("increase", "decrease"),
    ("trust", "distrust"),
    ("like", "dislike"),
    ("accept", "reject"),
    ("strong", "weak"),
]
OPPOSITE = {a: b for a, b in _OPPOSITES} | {b: a for a, b in _OPPOSITES}


def _usable_synonym(synonym: str, word: str, sentence_words: set[str]) -> bool:
    key = synonym.casefold()
    return (
        bool(_SYNONYM_SHAPE.match(synonym))
        and len(synonym.split()) <= _MAX_SYNONYM_WORDS
        and normalize(synonym) != normalize(word)
        # A word already in the sentence would swap roles ("men" for "women") or repeat itself.
        and key not in sentence_words
        and OPPOSITE.get(word.casefold()) != key
        # A capitalised replacement for a lower-case word is a name, not a synonym.
        and not (word[:1].islower() and synonym[:1].isupper())
    )


_ARTICLE_BEFORE = re.compile(r"(?<![\w'-])(an?)(\s+)$", re.IGNORECASE)


def _fit_article(text_before: str, word: str) -> str:
    """Fix an "a" / "an" right before the new word ("a job" -> "an occupation")."""
    match = _ARTICLE_BEFORE.search(text_before)
    if not match:
        return text_before
    article = "an" if word[:1].lower() in "aeiou" else "a"
    if match.group(1)[:1].isupper():
        article = article.capitalize()
    return text_before[: match.start()] + article + match.group(2)


def _replace_all(sentence: str, occurrences: list[re.Match[str]], synonym: str) -> str:
    """The sentence with every occurrence replaced by the synonym, each in the case it had."""
    parts: list[str] = []
    end = 0
    for match in occurrences:
        parts += [_fit_article(sentence[end : match.start()], synonym), _match_case(match.group(0), synonym)]
        end = match.end()
    parts.append(sentence[end:])
    return "".join(parts)


def substitute(
    sentence: str,
    table: prompts.SynonymTable,
    *,
    max_candidates: int,
    check: SynonymCheck | None = None,
) -> list[Substitution]:
    """Sentences with one content word replaced by one of its synonyms (whole words, case kept).

    Words the model invented (not in the sentence) and protected function words are ignored, and so
    are replacements `check` (when given) does not confirm as synonyms.
    Candidates are interleaved across words so a small `max_candidates` still varies the word.
    """
    per_word: list[list[Substitution]] = []
    seen = {normalize(sentence)}
    sentence_words = {w.casefold() for w in _WORD.findall(sentence)}
    for entry in table.words:
        word = entry.word.strip()
        if not _WORD.fullmatch(word) or word.casefold() in PROTECTED_WORDS:
            continue
        occurrences = list(_word_pattern(word).finditer(sentence))
        if not occurrences:
            continue
        options: list[Substitution] = []
        for synonym in entry.synonyms:
            synonym = synonym.strip()
            if not _usable_synonym(synonym, occurrences[0].group(0), sentence_words):
                continue
            if check is not None and not check(word, synonym):
                continue
            text = _replace_all(sentence, occurrences, synonym)
            key = normalize(text)
            if key in seen:
                continue
            seen.add(key)
            options.append(Substitution(text=text, word=word, synonym=synonym))
        if options:
            per_word.append(options)
    interleaved = [s for group in zip_longest(*per_word) for s in group if s is not None]
    return interleaved[:max_candidates]


def lexicon_substitutions(
    sentence: str, thesaurus: Thesaurus, *, max_synonyms: int, max_candidates: int
) -> list[Substitution]:
    """Substitutions proposed by the offline thesaurus instead of a model: each unprotected word
    replaced by its WordNet synonyms in the sense and form it has in this sentence. No model call."""
    from agents.thesaurus import tokens_of

    tokens = tokens_of(sentence)
    entries: list[prompts.WordSynonyms] = []
    listed: set[str] = set()
    for index, token in enumerate(tokens):
        key = token.casefold()
        if len(token) < 2 or key in PROTECTED_WORDS or key in listed:
            continue
        listed.add(key)
        synonyms = thesaurus.synonyms_in(tokens, index)[:max_synonyms]
        if synonyms:
            entries.append(prompts.WordSynonyms(word=token, synonyms=synonyms))
    if not entries:
        return []
    table = prompts.SynonymTable(words=entries[:16])
    return substitute(sentence, table, max_candidates=max_candidates)
