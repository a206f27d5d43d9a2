"""A stable train/validation split by question.

All examples of one WVS question land on the same side: augmented samples paraphrase their seed, so
splitting them one by one would put near-copies of the training data into validation. Questions are
ranked by a hash of their id, which does not depend on run order, samples or cultures: the same seeds
and fraction always give the same validation questions, in every culture.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from builders.examples import Example


def _rank(q_id: str) -> str:
    return hashlib.sha256(f"wvs-split:{q_id}".encode()).hexdigest()


def validation_questions(q_ids: Sequence[str], fraction: float) -> set[str]:
    """round(fraction x questions) question ids, at least one when fraction > 0, never all of them."""
    distinct = sorted(set(q_ids))
    if fraction <= 0 or len(distinct) < 2:
        return set()
    count = min(max(1, round(fraction * len(distinct))), len(distinct) - 1)
    return set(sorted(distinct, key=_rank)[:count])


def assign_splits(examples: Sequence[Example], fraction: float) -> list[Example]:
    held_out = validation_questions([example.q_id for example in examples], fraction)
    return [
        example.model_copy(update={"split": "validation" if example.q_id in held_out else "train"})
        for example in examples
    ]
