"""CulturePark's opinion extraction: one structured call per line of an attitude-holding speaker.

The model itself writes each opinion as a self-contained first-person sentence; nothing here swaps
pronouns afterwards, because word replacement breaks quotes, names and "we" statements.
"""

from __future__ import annotations

import re

import prompts
from agents.attitude import item_text
from agents.dialogue import MAX_LINE_CHARS, Persona
from agents.json_answers import MalformedOutput, load_json_answer
from agents.providers.chat import ResilientChatModel
from agents.text import normalize, word_count
from builders.prompt import is_question
from storage.records import Seed

MAX_OPINIONS = 5
MIN_WORDS = 4  # shorter items are fragments ("I agree.", "Family first.") that say nothing alone
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+")
_QUOTES = "\"'“”‘’`«»"
_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


def render_extraction(
    seed: Seed, persona: Persona, utterance: str, previous: str | None
) -> list[prompts.Message]:
    """Messages asking for the opinions `persona` voiced in `utterance` (`previous`: the line before
    it, by the other speaker, which the utterance may answer or refer to)."""

    def one_line(text: str) -> str:
        # On one line so that no text can be read as a "### role" header of the template.
        return " ".join(text.split())[: 2 * MAX_LINE_CHARS]

    return prompts.template(prompts.CULTUREPARK_EXTRACT).render(
        kind="question" if is_question(seed.q_content) else "statement",
        item=item_text(seed),
        name=persona.name,
        utterance=one_line(utterance),
        previous=one_line(previous) if previous else "",
        max_opinions=MAX_OPINIONS,
    )


def _entries(data: object) -> list[object]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        # Small models vary the key's case or number ("Opinions", "opinion").
        for key, value in data.items():
            if str(key).strip().lower().startswith("opinion") and isinstance(value, list):
                return value
    raise MalformedOutput("no opinion list in the answer")


def _clean(text: str) -> str:
    text = _LIST_MARKER.sub("", " ".join(text.split()), count=1)
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1]
    return text.strip()


def parse_opinions(raw: str) -> list[str]:
    """The opinions of an extraction answer: stripped, de-duplicated (ignoring case and punctuation),
    fragments dropped, at most `MAX_OPINIONS`.

    Accepts fenced JSON, a bare list and a truncated answer (whose last, cut-off sentence is dropped).
    Returns [] for an answer that lists no opinion; raises `MalformedOutput` (a ValueError) when the
    answer holds no opinion list at all, or a list with no text in it.
    """
    entries = _entries(load_json_answer(raw))
    texts = [e for e in entries if isinstance(e, str)]
    if entries and not texts:
        raise MalformedOutput(f"the opinion list holds no sentences: {raw[:80]!r}")
    truncated = not _FENCE.sub("", raw).rstrip().endswith(("}", "]"))
    if truncated and texts and not texts[-1].rstrip().endswith((".", "!", "?")):
        texts = texts[:-1]
    kept: list[str] = []
    seen: set[str] = set()
    for text in map(_clean, texts):
        key = normalize(text)
        if word_count(text) < MIN_WORDS or key in seen:
            continue
        seen.add(key)
        kept.append(text)
    return kept[:MAX_OPINIONS]


async def extract_opinions(
    model: ResilientChatModel,
    seed: Seed,
    persona: Persona,
    utterance: str,
    previous: str | None,
    *,
    sample_seed: int = 0,
) -> list[str]:
    """The opinions `persona` voiced in `utterance`; raises `ModelCallFailed` when no answer parsed."""
    completion = await model.generate(
        render_extraction(seed, persona, utterance, previous),
        step="extract",
        schema=prompts.ExtractedOpinions,
        parse=parse_opinions,
        temperature=0.0,
        max_tokens=256,
        sample_seed=sample_seed,
    )
    return list(completion.parsed)
