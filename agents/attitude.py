"""A culture's attitude to a WVS item, as the sentence CulturePark's verifier checks opinions against.

The attitude is the culture's answer code (the dataset builder's label) named by the item's option
scale. Statements answered on an agreement scale read "People of Arabic culture strongly agree with the
statement: ...". Questions read "Asked '...', people of Arabic culture answer: Very important.". A code
that an anchored 1..10 scale leaves unnamed is given by its position between the named ends, with the
end it is nearer to, so that a verifier can tell a 7 from a 4 without knowing the scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builders.prompt import is_question
from builders.scales import OptionScale, parse_option_scale
from storage.records import Seed

# Labels that are themselves a stance towards a statement ("Strongly agree", "Disagree strongly",
# "Neither agree nor disagree"), so "people ... <label> with the statement" reads as English.
_AGREEMENT = re.compile(r"^(?:(?:strongly|completely|somewhat|neither)\s+)?(?:dis)?agree\b", re.IGNORECASE)
_STRAY_ARTICLE = re.compile(r"\bthe your\b", re.IGNORECASE)


@dataclass(frozen=True)
class Attitude:
    culture: str
    q_id: str
    label: int
    answer: str  # the label's option text ("Strongly agree"), or its place on an anchored scale
    statement: str  # the attitude as one sentence, what opinions are verified against


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _upper_first(text: str) -> str:
    # Not str.capitalize(): that would lower-case the culture's name too.
    return text[:1].upper() + text[1:]


def _named(scale: OptionScale, code: int) -> str | None:
    return next((option.label for option in scale.options if option.code == code), None)


def _position(scale: OptionScale, code: int) -> str:
    """'7 on a scale from 1 (Completely disagree) to 10 (Completely agree)'."""
    low, high = _named(scale, scale.low), _named(scale, scale.high)
    return f"{code} on a scale from {scale.low} ({low}) to {scale.high} ({high})"


def _leaning(scale: OptionScale, code: int) -> str:
    """Which named end an unnamed code is nearer to; the middle of an odd scale leans nowhere."""
    middle = (scale.low + scale.high) / 2
    if code == middle:
        return "in the middle"
    end = scale.high if code > middle else scale.low
    return f"closer to {_lower_first(_named(scale, end) or str(end))}"


def _sentence(culture: str, text: str, scale: OptionScale, code: int, answer: str) -> str:
    people = f"people of {culture} culture"
    named = _named(scale, code) is not None
    if is_question(text):
        if named:
            return f"Asked '{text}', {people} answer: {answer}."
        return f"Asked '{text}', {people} answer {answer}, {_leaning(scale, code)}."
    statement = text.rstrip(".").rstrip()
    if not named:
        return f"{_upper_first(people)} rate the statement '{statement}' {answer}, {_leaning(scale, code)}."
    if _AGREEMENT.match(answer):
        return f"{_upper_first(people)} {_lower_first(answer)} with the statement: {statement}."
    return f"Asked about the statement '{statement}', {people} answer: {answer}."


def item_text(seed: Seed) -> str:
    """The seed's statement or question as shown to models: on one line, without the seed file's slip
    in Q196-Q198 ("the your country's government"), which would be quoted back in every answer."""
    return _STRAY_ARTICLE.sub("your", " ".join(seed.q_content.split()))


def attitude_of(culture: str, seed: Seed, label: int | None) -> Attitude | None:
    """The culture's attitude to `seed`, or None when the question was never asked there (no label).

    Raises `builders.scales.ScaleError` for an unreadable option string and ValueError for a label
    outside the scale: both mean the labels and the seeds disagree, which no dialogue can repair.
    """
    if label is None:
        return None
    scale = parse_option_scale(seed.option)
    if label not in scale:
        raise ValueError(f"label {label!r} of Q{seed.q_id} for {culture} is not on its scale {seed.option!r}")
    answer = _named(scale, label) or _position(scale, label)
    text = item_text(seed)
    return Attitude(
        culture=culture,
        q_id=seed.q_id,
        label=label,
        answer=answer,
        statement=_sentence(culture, text, scale, label, answer),
    )
