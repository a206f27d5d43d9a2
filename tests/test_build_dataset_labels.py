"""Label rules on small, hand-made answer counts (real survey data is checked in the command tests)."""

from collections import Counter

from builders.labels import LabelMethod, compute_label
from builders.scales import parse_option_scale

AGREE4 = parse_option_scale("1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree")
IMMIGRATION = parse_option_scale("2. Agree 1. Hard to say 0. Disagree")
TEN = parse_option_scale("1. Completely disagree 10. Completely agree")


def label(counts_by_country, scale=AGREE4, method=LabelMethod.mode):
    return compute_label("Test", "27", scale, counts_by_country, method)


def test_missing_codes_and_off_scale_values_are_not_answers():
    # The original code averaged -4 ("not asked") in; here only 3 and 4 count.
    result = label({"AAA": Counter({-4: 50, -1: 7, -2: 3, -5: 1, 3: 2, 4: 1, 5: 9, 0: 4})})
    assert result.n_valid == 3
    assert result.distribution == {"1": 0.0, "2": 0.0, "3": 0.6667, "4": 0.3333}
    assert result.label == 3


def test_a_question_nobody_was_asked_has_no_label_and_no_distribution():
    result = label({"IRQ": Counter({-4: 1200})}, method=LabelMethod.mean)
    assert result.label is None
    assert result.distribution == {}
    assert result.n_valid == 0
    assert result.countries == []
    assert result.n_valid_by_country == {"IRQ": 0}


def test_each_country_weighs_the_same_whatever_its_sample_size():
    # Pooled, code 1 (60 of 110 answers) would win; weighted equally, A's answer 2 holds half the mass.
    result = label({"A": Counter({2: 10}), "B": Counter({1: 60, 3: 40})})
    assert result.distribution == {"1": 0.3, "2": 0.5, "3": 0.2, "4": 0.0}
    assert result.label == 2
    assert result.n_valid == 110
    assert result.countries == ["A", "B"]


def test_a_country_without_valid_answers_drops_out_of_that_question():
    result = label({"A": Counter({-4: 500}), "B": Counter({4: 3, 1: 1})})
    assert result.distribution == {"1": 0.25, "2": 0.0, "3": 0.0, "4": 0.75}
    assert result.countries == ["B"]
    assert result.n_valid_by_country == {"A": 0, "B": 4}


def test_a_tie_for_the_mode_goes_to_the_lowest_code():
    assert label({"A": Counter({3: 5, 2: 5, 4: 1})}).label == 2


def test_the_mean_label_rounds_halves_up():
    # Mean 2.5 exactly: Python's round() would give 2.
    assert label({"A": Counter({2: 1, 3: 1})}, method=LabelMethod.mean).label == 3
    assert label({"A": Counter({1: 3, 4: 1})}, method=LabelMethod.mean).label == 2  # 1.75


def test_mode_and_mean_differ_on_a_skewed_answer_set():
    counts = {"A": Counter({1: 5, 4: 4})}
    assert label(counts).label == 1
    assert label(counts, method=LabelMethod.mean).label == 2  # 21 / 9 = 2.33


def test_zero_is_a_real_answer_on_a_zero_to_two_scale():
    result = label({"A": Counter({0: 6, 1: 3, 2: 1, -1: 20})}, scale=IMMIGRATION)
    assert result.label == 0
    assert result.distribution == {"0": 0.6, "1": 0.3, "2": 0.1}
    assert (
        label({"A": Counter({0: 6, 1: 3, 2: 1})}, scale=IMMIGRATION, method=LabelMethod.mean).label == 1
    )  # 0.5


def test_unnamed_points_of_a_one_to_ten_scale_are_answers():
    result = label({"A": Counter({7: 3, 8: 2, 10: 1, 11: 5})}, scale=TEN, method=LabelMethod.mean)
    assert result.n_valid == 6
    assert result.label == 8  # 47 / 6 = 7.83
    assert list(result.distribution) == [str(code) for code in range(1, 11)]
