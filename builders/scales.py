"""A seed's `option` string parsed into the answer scale of its WVS question.

The strings come straight from the CultureLLM seed file and keep its quirks:

- Q31 reads `1. Strongly agree 2. agree 4. Disagree 4. Strongly disagree`. The WVS codebook codes Q31
  1 agree strongly, 2 agree, 3 disagree, 4 disagree strongly, and the answer files hold exactly those
  codes (3 is the most common answer), so the first `4.` is a typo for `3.`. Duplicated numbers are
  renumbered by position when that yields one unbroken run with the same ends; anything else is refused
  rather than guessed.
- `1. Completely disagree 10. Completely agree` names only the ends of a 1..10 scale. A scale is every
  whole number from its lowest to its highest option, named or not.
- `2. Agree 1. Hard to say 0. Disagree` runs downwards from 2 to 0; the printed order is kept.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# "N. " at the start of the string or after whitespace opens an option; its label runs to the next one.
_OPTION_MARKER = re.compile(r"(?:^|(?<=\s))(\d{1,3})\.\s+")


class ScaleError(ValueError):
    """An option string that cannot be read as an answer scale."""


class ScaleOption(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: int
    label: str


class OptionScale(BaseModel):
    """The named options of a question, in printed order, and the answer codes they span."""

    model_config = ConfigDict(frozen=True)

    options: tuple[ScaleOption, ...]
    repaired: bool = False

    @property
    def low(self) -> int:
        return min(option.code for option in self.options)

    @property
    def high(self) -> int:
        return max(option.code for option in self.options)

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1))

    @property
    def anchored(self) -> bool:
        """True when only some points are named, as on a 1..10 scale labelled at its ends."""
        return len(self.options) < len(self.codes)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and self.low <= code <= self.high

    def as_text(self) -> str:
        """The scale in the seed file's one-line style, with any repaired numbering."""
        return " ".join(f"{option.code}. {option.label}" for option in self.options)


def _renumber(numbers: list[int]) -> list[int] | None:
    """Consecutive numbers from the first to the last, if only duplicated numbers need to change."""
    step = 1 if numbers[-1] >= numbers[0] else -1
    run = [numbers[0] + step * position for position in range(len(numbers))]
    if run[-1] != numbers[-1]:
        return None
    duplicated = {number for number in numbers if numbers.count(number) > 1}
    if any(given != wanted and given not in duplicated for given, wanted in zip(numbers, run, strict=True)):
        return None
    return run


def _capitalised(label: str) -> str:
    # The seed file writes some labels in lower case ("2. agree"); only the first letter is changed.
    return label[:1].upper() + label[1:]


def parse_option_scale(option: str) -> OptionScale:
    """Parse `1. Strongly agree 2. agree ...` into its options, repairing duplicated numbering."""
    markers = list(_OPTION_MARKER.finditer(option))
    if len(markers) < 2 or option[: markers[0].start()].strip():
        raise ScaleError(f"not an option scale of the form '1. ... 2. ...': {option!r}")
    numbers = [int(marker.group(1)) for marker in markers]
    labels = [
        option[marker.end() : following.start() if following else len(option)].strip()
        for marker, following in zip(markers, [*markers[1:], None], strict=True)
    ]
    if not all(labels):
        raise ScaleError(f"an option has no label: {option!r}")
    repaired = len(set(numbers)) < len(numbers)
    if repaired:
        renumbered = _renumber(numbers)
        if renumbered is None:
            raise ScaleError(f"option numbers repeat and cannot be repaired: {option!r}")
        numbers = renumbered
    options = tuple(
        ScaleOption(code=code, label=_capitalised(label)) for code, label in zip(numbers, labels, strict=True)
    )
    return OptionScale(options=options, repaired=repaired)
