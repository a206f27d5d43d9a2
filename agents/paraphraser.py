"""Paraphrase generator (CultureLLM stage 1): rendering the request and parsing the answer.

Rendering and parsing are separate so each can be tested alone; the graph node in
`graphs/augment.py` only glues them to a model call.
"""

from __future__ import annotations

import re

import prompts
from agents.text import is_trivial_copy, normalize, word_count

# "1. text", "2) text", "(3) text", "- text", "* text", "• text"
_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}[.):\]]|[-*•+]|#+)\s+")
# Several numbered items run together on one line: "1. foo 2. bar"
_INLINE_ITEM = re.compile(r"(?:(?<=\s)|^)\d{1,2}[.)]\s+")
# Labels small models like to put in front of an answer.
_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:rewritten|rephrased|paraphrased|new|alternative|revised)?\s*"
    r"(?:sentence|version|rewrite|paraphrase|option|answer|output)\s*\d*\s*(?:\*\*)?\s*[:\-–]\s*",
    re.IGNORECASE,
)
_CHATTER = re.compile(
    r"^(?:here (?:are|is)|sure|certainly|of course|okay|ok\b|i hope|these (?:rewrites|sentences)|"
    r"note:|rewrite the sentence|sentence:|original)",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’`«»"
_MIN_WORDS = 3


def render_paraphrase_request(sentence: str, n: int) -> list[prompts.Message]:
    return prompts.template(prompts.PARAPHRASE).render(sentence=sentence, n=n)


def _split_items(raw: str) -> list[str]:
    items: list[str] = []
    for line in raw.replace("\r", "\n").split("\n"):
        line = line.strip()
        if not line:
            continue
        inline = [part for part in _INLINE_ITEM.split(line) if part.strip()]
        items.extend(inline if len(inline) > 1 else [line])
    return items


def _clean(item: str) -> str:
    item = _LIST_MARKER.sub("", item, count=1)
    item = _LABEL.sub("", item, count=1)
    item = item.strip().strip("*_").strip()
    if len(item) >= 2 and item[0] in _QUOTES and item[-1] in _QUOTES:
        item = item[1:-1].strip()
    return item.strip(_QUOTES).strip()


def parse_paraphrases(raw: str, seed: str, *, max_items: int | None = None) -> list[str]:
    """Extract candidate rewrites of `seed` from a model's free-text answer.

    Tolerates numbered lists, bullets, quotes, labels ("Rewritten sentence: ...") and chatter
    ("Here are five ..."). Drops copies of the seed, duplicates, fragments and run-away lines
    (a truncated or looping answer yields the usable items before the damage).
    """
    seed_words = max(word_count(seed), 1)
    seen = {normalize(seed)}
    kept: list[str] = []
    for item in _split_items(raw or ""):
        if _CHATTER.match(item.lstrip("*#- ")):
            continue
        text = _clean(item)
        if not text or text.endswith(":"):
            continue
        words = word_count(text)
        if words < _MIN_WORDS or words > 3 * seed_words + 8:
            continue
        key = normalize(text)
        if key in seen or is_trivial_copy(text, seed):
            continue
        seen.add(key)
        kept.append(text)
        if max_items is not None and len(kept) >= max_items:
            break
    return kept
