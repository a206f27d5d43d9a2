"""Option strings of the seed file parsed into answer scales, quirks included."""

import json
from pathlib import Path

import pytest

from builders.scales import ScaleError, parse_option_scale

SEEDS = Path(__file__).resolve().parent.parent / "data" / "wvs" / "seeds.jsonl"


def pairs(option: str) -> list[tuple[int, str]]:
    return [(o.code, o.label) for o in parse_option_scale(option).options]


def test_a_four_point_agreement_scale_keeps_its_order_and_capitalises_labels():
    scale = parse_option_scale("1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree")
    assert pairs(scale.as_text()) == [
        (1, "Strongly agree"),
        (2, "Agree"),
        (3, "Disagree"),
        (4, "Strongly disagree"),
    ]
    assert scale.codes == (1, 2, 3, 4)
    assert not scale.anchored and not scale.repaired


def test_q31_duplicated_four_is_renumbered_to_the_codes_the_survey_uses():
    # The WVS codebook and the answer files code Q31 as 1..4, with 3 = disagree.
    scale = parse_option_scale("1. Strongly agree 2. agree 4. Disagree 4. Strongly disagree")
    assert pairs(scale.as_text()) == [
        (1, "Strongly agree"),
        (2, "Agree"),
        (3, "Disagree"),
        (4, "Strongly disagree"),
    ]
    assert scale.repaired
    assert 3 in scale


def test_a_descending_zero_to_two_scale_keeps_the_printed_order():
    scale = parse_option_scale("2. Agree 1. Hard to say 0. Disagree")
    assert pairs(scale.as_text()) == [(2, "Agree"), (1, "Hard to say"), (0, "Disagree")]
    assert scale.codes == (0, 1, 2)
    assert 0 in scale and -1 not in scale and 3 not in scale


def test_a_scale_named_only_at_its_ends_spans_every_point_between():
    scale = parse_option_scale("1. Completely disagree 10. Completely agree ")
    assert pairs(scale.as_text()) == [(1, "Completely disagree"), (10, "Completely agree")]
    assert scale.codes == tuple(range(1, 11))
    assert scale.anchored
    assert 7 in scale and 11 not in scale and 0 not in scale


def test_numbers_inside_a_label_do_not_open_an_option():
    assert pairs("1. Under 18 years 2. 18 or older") == [(1, "Under 18 years"), (2, "18 or older")]


@pytest.mark.parametrize(
    "option",
    [
        "",
        "Strongly agree, agree, disagree",
        "1. Only one option",
        "Agree: 1. yes 2. no",
        "1. Yes 2.  ",
        "1. A 1. B 1. C",
        "1. A 3. B 3. C 7. D",
    ],
)
def test_option_strings_that_are_not_a_scale_are_refused_with_the_string_quoted(option):
    with pytest.raises(ScaleError) as raised:
        parse_option_scale(option)
    assert repr(option) in str(raised.value)


def test_every_shipped_seed_parses_into_a_scale_of_two_to_ten_points():
    for line in SEEDS.read_text(encoding="utf-8").splitlines():
        seed = json.loads(line)
        scale = parse_option_scale(seed["option"])
        assert 2 <= len(scale.codes) <= 10, seed["q_id"]
        assert len({o.code for o in scale.options}) == len(scale.options), seed["q_id"]
