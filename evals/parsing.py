"""Which label a classification answer commits to, or None when it commits to none (invalid).

The rule, in the order it is applied:

1. The answer is cleaned: Unicode NFKC (full-width letters and colons become ASCII), markdown emphasis
   and code marks removed, curly quotes straightened, a leading bullet dropped.
2. Mentions are found. A *label mention* is the label as a whole token, where letters, digits and "_"
   next to it make it a different token ("NOT" is not inside "NOTHING", "HS" is not inside "NOT_HS" or
   "HS1"). It counts when it is written like a label (its own spelling or all upper case: "OFF",
   "Spam"/"SPAM"), or, in any case, when it stands on its own (punctuation or the text's edge on both
   sides: "off.", "(not)"), when it follows a lead-in ("Answer: 0", "the label is off", "答案是 1",
   "الجواب: off"), or when it is the answer's only Latin/digit token. Labels without letters ("0",
   "1", "-") count only in those three positions, so numbers and dashes inside a sentence are no answer.
   A *meaning mention* is a label's meaning as a phrase, in any case ("not offensive"). When mentions
   overlap, the longer one wins, so "not offensive" is NOT and not the OFF of "offensive", and "NOT
   offensive" is one mention. Meanings made only of function words ("neither", "it does not") count
   only as the whole answer.
3. The commitment:
   - An answer whose first sentence (up to ". ", "!", "?", ";" or a line end) starts with a mention,
     after an optional lead-in, commits to that label, provided the first sentence holds no refusal
     and mentions no other label: "OFF (offensive)" is OFF, "OFF. It would be NOT if ..." is OFF, and
     "NOT OFF" or "OFF or NOT" is invalid. Explanations after the first sentence do not count.
   - An answer whose lines start with two different labels lists the options ("- NOT: not offensive /
     - OFF: offensive", the small models' habit) and commits to none: invalid.
   - Otherwise a refusal anywhere ("I cannot classify", "As an AI", "I'm sorry", "not sure") is
     invalid; else one label named after lead-ins is the commitment ("Sure! The answer is OFF."); else
     the answer commits when it mentions exactly one label ("The text is offensive.").
   - A mention with a negation earlier in its clause ("I do not think it is offensive", "isn't OFF",
     "non-vulgar") makes the answer invalid rather than guessing the other class. The word "not" in a sentence is
     never read as the label NOT: only "NOT", a "not" standing alone or after a lead-in, or a meaning
     such as "not offensive" is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

# English and the answer languages of the shipped cultures; a lead-in is what comes before the label.
_LEAD_IN = re.compile(
    r"""
    (?:\b(?:(?:the|my)\s+)?(?:final\s+|predicted\s+|correct\s+)?
        (?:label|answer|category|class|classification|prediction|output|verdict|result)
        \s*(?:(?:is|would\s+be|should\s+be|will\s+be)\s*[:=]?|[:=\-–—])\s*
     |\b(?:classif(?:y|ied)|label(?:l?ed)?|categori[sz]ed?)\s+(?:(?:it|this|the\s+(?:text|tweet|comment))\s+)?as\s*:?\s*
     |(?:答案|标签|標籤|类别|類別|分类|分類)\s*(?:是|为|為|:)?\s*
     |(?:الجواب|الإجابة|التصنيف|التسمية)\s*(?:هو|هي)?\s*:?\s*
     |(?:정답|레이블|라벨|분류|답)\s*(?:은|는|:)?\s*
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)
_REFUSAL = re.compile(
    r"""
    \bi(?:'m|\s+am)\s+sorry\b|\bsorry\b|\bapologi[sz]e\b|\bas\s+an\s+ai\b|\bas\s+a\s+(?:large\s+)?language\s+model\b
    |\bi\s+(?:cannot|can\s*not|can't|won't|will\s+not|must\s+decline|refuse|(?:am|'m)\s+(?:unable|not\s+able))\b
    |\bi\s+(?:do\s+not|don't)\s+(?:know|feel\s+comfortable)\b
    |\bunable\s+to\s+(?:classify|determine|decide|label|answer|help|assist|comply|provide)\b
    |\b(?:cannot|can't|can\s+not)\s+be\s+(?:classified|determined|labell?ed)\b
    |\bnot\s+(?:sure|certain)\b|\bunsure\b|\binsufficient\s+(?:context|information)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
_NEGATORS = frozenset(
    "not no non never neither nor without hardly isn't isnt doesn't doesnt don't dont aren't arent "
    "wasn't wasnt weren't won't wouldn't shouldn't cannot can't".split()
)
# A meaning made only of these says nothing on its own ("neither", "it does not").
_FUNCTION_WORDS = _NEGATORS | frozenset(
    "it its this that the a an is are was does do did contain contains none other any of".split()
)
_MARKUP = re.compile(r"[*`]|__|^\s*#+\s*|^\s*>\s*", re.MULTILINE)
_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "«": '"', "»": '"'})
_BULLET = re.compile(r"^\s*[-•]\s+(?=\S)")
_DECORATION = " \t\r\n\"'([{「『【<"
_SENTENCE_END = re.compile(r"\n|[.!?;。！？](?=\s|$)")
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9_]+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


@dataclass(frozen=True)
class _Mention:
    label: str
    start: int
    end: int


@dataclass(frozen=True)
class _Patterns:
    labels: tuple[tuple[str, re.Pattern[str]], ...]
    meanings: tuple[tuple[str, re.Pattern[str]], ...]  # matched anywhere
    whole_meanings: tuple[tuple[str, str], ...]  # casefolded, matched only as the whole answer


def parse_label(answer: str, labels: Sequence[str], meanings: Mapping[str, str]) -> str | None:
    """The label in `labels` that `answer` commits to, or None (refusal, two labels, nothing usable)."""
    text = _clean(answer if isinstance(answer, str) else "")
    if not text:
        return None
    patterns = _patterns(tuple(labels), tuple(sorted(meanings.items())))
    lead_in_ends = {_skip_decoration(text, m.end()) for m in _LEAD_IN.finditer(text) if m.end() > m.start()}
    mentions = _mentions(text, patterns, lead_in_ends)
    if not mentions:
        return None

    if len({m.label for m in mentions if m.start in _line_heads(text)}) > 1:
        return None  # the answer lists labels line by line (it echoes the options): no commitment

    head = _skip_decoration(text, 0)
    lead = _LEAD_IN.match(text, head)
    if lead:
        head = _skip_decoration(text, lead.end())
    first_sentence = _SENTENCE_END.search(text, mentions[0].end)
    head_end = first_sentence.start() if first_sentence else len(text)
    if mentions[0].start == head:
        in_head = [m for m in mentions if m.start < head_end]
        if _REFUSAL.search(text, 0, head_end) or len({m.label for m in in_head}) > 1:
            return None
        return None if any(_negated(text, m, mentions) for m in in_head) else mentions[0].label

    if _REFUSAL.search(text):
        return None
    committed = [m for m in mentions if m.start in lead_in_ends]
    if len({m.label for m in committed}) == 1:
        return None if any(_negated(text, m, mentions) for m in committed) else committed[0].label
    if len({m.label for m in mentions}) == 1 and not any(_negated(text, m, mentions) for m in mentions):
        return mentions[0].label
    return None


def _clean(answer: str) -> str:
    text = unicodedata.normalize("NFKC", answer).translate(_QUOTES)
    return _BULLET.sub("", _MARKUP.sub("", text)).strip()


_LINE_BULLET = re.compile(r"[ \t]*(?:[-*•]|\d+[.)])?[ \t]*")


def _line_heads(text: str) -> set[int]:
    """Where each line's first word starts, after a bullet or a list number ("- ", "2. ")."""
    heads = set()
    for start in [0, *(i + 1 for i, ch in enumerate(text) if ch == "\n")]:
        heads.add(_skip_decoration(text, _LINE_BULLET.match(text, start).end()))
    return heads


def _skip_decoration(text: str, at: int) -> int:
    while at < len(text) and text[at] in _DECORATION:
        at += 1
    return at


@lru_cache(maxsize=256)
def _patterns(labels: tuple[str, ...], meanings: tuple[tuple[str, str], ...]) -> _Patterns:
    label_patterns = []
    for label in labels:
        if not label.strip():
            continue
        # "2.5" is a number, not the label 5 (nor, below, the label 2)
        before = (r"(?<![A-Za-z0-9_])" if label[0].isascii() else r"(?<!\w)") + r"(?<!\d[.,])"
        after = r"(?![A-Za-z0-9_])" if label[-1].isascii() else r"(?!\w)"
        # "0.5" is a number, not the label 0
        label_patterns.append((label, re.compile(before + re.escape(label) + after + r"(?![.,]\d)", re.I)))
    anywhere, whole = [], []
    for label, meaning in meanings:
        words = [w.casefold() for w in re.findall(r"[^\W_]+(?:'[^\W_]+)?", meaning)]
        if label not in labels or not words or meaning.strip() in labels:
            continue  # the registry's stand-in for a missing meaning is the label itself
        if all(w in _FUNCTION_WORDS for w in words):
            whole.append((label, " ".join(words)))
        else:
            body = r"[\W_]+".join(re.escape(w) for w in words)  # any spacing or punctuation between words
            anywhere.append((label, re.compile(rf"(?<!\w){body}(?!\w)", re.I)))
    return _Patterns(tuple(label_patterns), tuple(anywhere), tuple(whole))


def _mentions(text: str, patterns: _Patterns, lead_in_ends: set[int]) -> list[_Mention]:
    ascii_tokens = {t.casefold() for t in _ASCII_TOKEN.findall(text)}
    found: list[_Mention] = []
    for label, pattern in patterns.labels:
        for m in pattern.finditer(text):
            strong = (
                _stands_alone(text, m.start(), m.end())
                or m.start() in lead_in_ends
                or ascii_tokens == {label.casefold()}
            )
            written_as_label = m.group() in (label, label.upper()) and any(c.isalpha() for c in label)
            if strong or written_as_label:
                found.append(_Mention(label, m.start(), m.end()))
    for label, pattern in patterns.meanings:
        found.extend(_Mention(label, m.start(), m.end()) for m in pattern.finditer(text))
    whole = " ".join(w.casefold() for w in _WORD.findall(text))
    found.extend(
        _Mention(label, 0, len(text)) for label, meaning in patterns.whole_meanings if whole == meaning
    )
    # Longest first, then keep only what does not overlap a kept mention.
    kept: list[_Mention] = []
    for mention in sorted(found, key=lambda m: (m.start - m.end, m.start)):
        if all(mention.end <= k.start or mention.start >= k.end for k in kept):
            kept.append(mention)
    return sorted(kept, key=lambda m: m.start)


def _stands_alone(text: str, start: int, end: int) -> bool:
    # Spaces and tabs are skipped, but a line break is a boundary: "0\nBecause ..." stands alone.
    before = text[:start].rstrip(" \t")
    after = text[end:].lstrip(" \t")
    return (not before or not before[-1].isalnum()) and (not after or not after[0].isalnum())


def _negated(text: str, mention: _Mention, mentions: list[_Mention]) -> bool:
    """A negation earlier in the mention's clause that is not itself a mention ("NOT OFF" is two labels).

    The clause starts after the last comma, colon or sentence end: "No, it is offensive" commits.
    """
    clause = max(text.rfind(mark, 0, mention.start) for mark in ".,;:!?\n。，") + 1
    return any(
        w.group().casefold() in _NEGATORS
        for w in _WORD.finditer(text, clause, mention.start)
        if not any(other.start <= w.start() < other.end for other in mentions)
    )
