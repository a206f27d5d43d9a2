"""A culture's answer to a WVS question, computed from its countries' survey responses.

Only real answers count: a code is an answer when it lies on the question's option scale, which rules
out the negative missing codes (-1 don't know, -2 no answer, -4 not asked, -5 missing) and stray values.
Each country of a culture weighs the same whatever its sample size, so Mexico's larger sample does not
outvote Argentina's; a country with no valid answer to a question drops out of that question.

Shares are exact fractions, so that ties and halves are decided by rule rather than by float noise:
- `mode`: the most frequent answer; a tie goes to the lowest code.
- `mean`: the mean code rounded to the nearest whole number, halves rounded up. Codes are the scale's
  own numbers (Q31's repaired 1..4, Q122's 0..2), so the mean is the mean of the codes the files hold.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from enum import Enum
from fractions import Fraction

from pydantic import BaseModel

from builders.scales import OptionScale

SHARE_DECIMALS = 4


class LabelMethod(str, Enum):
    mode = "mode"
    mean = "mean"


class CultureLabel(BaseModel):
    """One line of `labels.jsonl`."""

    culture: str
    q_id: str
    label: int | None
    distribution: dict[str, float]
    n_valid: int
    countries: list[str]
    n_valid_by_country: dict[str, int]
    method: LabelMethod


def valid_answers(counts: Counter[int], scale: OptionScale) -> Counter[int]:
    """Only the codes that are options of the scale; missing codes and stray values are dropped."""
    return Counter({code: n for code, n in counts.items() if code in scale and n > 0})


def culture_distribution(valid_by_country: Mapping[str, Counter[int]]) -> dict[int, Fraction]:
    """Answer shares with each answering country weighted equally; empty when no country answered."""
    answering = {country: counts for country, counts in valid_by_country.items() if counts.total()}
    shares: dict[int, Fraction] = {}
    for counts in answering.values():
        total = counts.total()
        for code, n in counts.items():
            shares[code] = shares.get(code, Fraction(0)) + Fraction(n, total * len(answering))
    return dict(sorted(shares.items()))


def mode_label(distribution: Mapping[int, Fraction]) -> int:
    top = max(distribution.values())
    return min(code for code, share in distribution.items() if share == top)


def mean_label(distribution: Mapping[int, Fraction]) -> int:
    mean = sum(code * share for code, share in distribution.items())
    return math.floor(mean + Fraction(1, 2))


def compute_label(
    culture: str,
    q_id: str,
    scale: OptionScale,
    counts_by_country: Mapping[str, Counter[int]],
    method: LabelMethod,
) -> CultureLabel:
    """The label of one question for one culture, or `label=None` when no country gave a valid answer."""
    valid = {country: valid_answers(counts, scale) for country, counts in counts_by_country.items()}
    distribution = culture_distribution(valid)
    label = None
    if distribution:
        label = mode_label(distribution) if method is LabelMethod.mode else mean_label(distribution)
    return CultureLabel(
        culture=culture,
        q_id=q_id,
        label=label,
        # Every point of the scale is listed, so lines of one question compare key by key.
        distribution=(
            {str(code): round(float(distribution.get(code, 0)), SHARE_DECIMALS) for code in scale.codes}
            if distribution
            else {}
        ),
        n_valid=sum(counts.total() for counts in valid.values()),
        countries=[country for country, counts in valid.items() if counts.total()],
        n_valid_by_country={country: counts.total() for country, counts in valid.items()},
        method=method,
    )
