"""The inversion guard drops mirror images and negation flips, and leaves real paraphrases alone."""

import pytest

from agents.guards import inversion_reason

SEED = "A university education is more important for a boy than for a girl"


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        ("A university education is more important for a girl than for a boy.", "swaps 'boy' and 'girl'"),
        ("A university education is not more important for a boy than for a girl", "flips the negation"),
        ("For a boy, a degree doesn't matter more than for a girl", "flips the negation"),
    ],
)
def test_inversions_are_caught(candidate, reason):
    assert inversion_reason(candidate, SEED) == reason


@pytest.mark.parametrize(
    "candidate",
    [
        "For a boy, a university education matters more than for a girl.",
        "University education is more essential for boys than for a girl",
        "It is not true that nothing matters: a university education is more important for a boy than a girl",
    ],
)
def test_faithful_rewrites_pass(candidate):
    assert inversion_reason(candidate, SEED) is None


def test_a_negated_seed_keeps_its_negation():
    seed = "I would not like to have drug addicts as neighbours"
    assert inversion_reason("I wouldn't want drug addicts as my neighbours", seed) is None
    assert inversion_reason("I would like to have drug addicts as neighbours", seed) == "flips the negation"
