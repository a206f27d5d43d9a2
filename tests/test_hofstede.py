"""Hofstede's six indices from VSM 2013 answers, and their comparison with the published scores.

The expected numbers are worked out by hand from the manual's formulas (written out beside each
case), so a wrong weight, sign or item in any formula fails a test.
"""

import json
import math

import pytest

from builders.cultures import DEFAULT_CULTURES_FILE, read_cultures_file
from builders.prompt import culture_system_prompt
from evals.hofstede import (
    DIMENSIONS,
    CultureCountries,
    HofstedeDataError,
    compare,
    item_means_from_answers,
    item_means_from_distributions,
    load_country_scores,
    load_culture_countries,
    load_vsm_items,
    parse_vsm_answer,
    partial_vsm_indices,
    reference_scores,
    vsm_indices,
    vsm_item_messages,
)

# Hand-made item means, every one different, so each term of each formula moves its index differently.
MEANS = {
    1: 2.0, 2: 1.5, 3: 2.5, 4: 2.2, 5: 1.8, 6: 1.6, 7: 2.4, 8: 2.9, 9: 3.1, 10: 2.3, 11: 2.6, 12: 3.4,
    13: 1.9, 14: 2.1, 15: 3.3, 16: 2.0, 17: 2.8, 18: 2.2, 19: 1.7, 20: 3.5, 21: 2.1, 22: 1.6, 23: 3.0,
    24: 3.2,
}  # fmt: skip

# With C = 50:
EXPECTED_AT_50 = {
    "pdi": 94.0,  # 35(m07 - m02) + 25(m20 - m23) = 35(2.4 - 1.5) + 25(3.5 - 3.0) = 31.5 + 12.5
    "idv": 109.5,  # 35(m04 - m01) + 35(m09 - m06) = 35(2.2 - 2.0) + 35(3.1 - 1.6) = 7 + 52.5
    "mas": 46.5,  # 35(m05 - m03) + 35(m08 - m10) = 35(1.8 - 2.5) + 35(2.9 - 2.3) = -24.5 + 21
    "uai": -21.5,  # 40(m18 - m15) + 25(m21 - m24) = 40(2.2 - 3.3) + 25(2.1 - 3.2) = -44 - 27.5
    "lto": 44.5,  # 40(m13 - m14) + 25(m19 - m22) = 40(1.9 - 2.1) + 25(1.7 - 1.6) = -8 + 2.5
    "ivr": 110.0,  # 35(m12 - m11) + 40(m17 - m16) = 35(3.4 - 2.6) + 40(2.8 - 2.0) = 28 + 32
}

OPTIONS_IMPORTANCE = {
    1: "of utmost importance",
    2: "very important",
    3: "of moderate importance",
    4: "of little importance",
    5: "of very little or no importance",
}
OPTIONS_AGREE = {1: "strongly agree", 2: "agree", 3: "undecided", 4: "disagree", 5: "strongly disagree"}
OPTIONS_FREQUENCY = {1: "always", 2: "usually", 3: "sometimes", 4: "seldom", 5: "never"}


@pytest.fixture(scope="module")
def scores():
    return load_country_scores()


@pytest.fixture(scope="module")
def cultures(scores):
    return load_culture_countries(scores=scores)


# --- indices ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_each_index_follows_the_manuals_formula_with_c_50(dimension):
    assert vsm_indices(MEANS)[dimension] == pytest.approx(EXPECTED_AT_50[dimension])


def test_mas_weighs_its_second_term_35_not_25():
    means = dict.fromkeys(range(1, 25), 3.0) | {8: 4.0}  # only m08 - m10 = 1 differs from zero
    assert vsm_indices(means)["mas"] == pytest.approx(85.0)  # 35 * 1 + 50; a weight of 25 gives 75


def test_each_dimension_adds_its_own_constant():
    constants = {"pdi": 0.0, "idv": 10.0, "mas": -20.0, "uai": 100.0, "lto": 5.5, "ivr": 50.0}
    indices = vsm_indices(MEANS, constants)
    assert indices == pytest.approx({d: EXPECTED_AT_50[d] - 50 + constants[d] for d in DIMENSIONS})


def test_one_constant_applies_to_all_six():
    assert vsm_indices(MEANS, 0) == pytest.approx({d: EXPECTED_AT_50[d] - 50 for d in DIMENSIONS})


def test_missing_item_means_are_an_error_naming_the_items():
    means = {item: mean for item, mean in MEANS.items() if item not in (3, 17)}
    with pytest.raises(HofstedeDataError, match=r"item\(s\) 3, 17\b"):
        vsm_indices(means)


def test_constants_missing_a_dimension_or_naming_an_unknown_one_are_errors():
    with pytest.raises(HofstedeDataError, match="missing: ivr"):
        vsm_indices(MEANS, {d: 50.0 for d in DIMENSIONS if d != "ivr"})
    with pytest.raises(HofstedeDataError, match="unknown: lto_wvs"):
        vsm_indices(MEANS, dict.fromkeys(DIMENSIONS, 50.0) | {"lto_wvs": 1.0})


def test_an_item_mean_off_the_answer_scale_is_rejected():
    # The off-scale 10 that a public implementation gives unreadable answers must never enter a formula.
    with pytest.raises(HofstedeDataError, match=r"item 7: mean 10\.0 is off the 1\.\.5 answer scale"):
        vsm_indices(MEANS | {7: 10.0})


def test_an_index_whose_item_has_no_mean_is_none_and_the_others_are_computed():
    means = {item: mean for item, mean in MEANS.items() if item != 20}  # item 20 is PDI's alone
    indices = partial_vsm_indices(means)
    assert indices["pdi"] is None
    assert {d: v for d, v in indices.items() if d != "pdi"} == pytest.approx(
        {d: EXPECTED_AT_50[d] for d in DIMENSIONS if d != "pdi"}
    )


# --- item means -------------------------------------------------------------------------------------


def test_unparsable_answers_are_excluded_and_counted_never_scored_off_scale():
    summary = item_means_from_answers({1: [1, None, 3], 2: [None, None], 3: [5, 5, 4, None]})
    assert summary.means == pytest.approx({1: 2.0, 3: 14 / 3})  # not (1 + 10 + 3) / 3
    assert summary.valid == {1: 2, 2: 0, 3: 3}
    assert summary.unparsable == {1: 1, 2: 2, 3: 1}
    assert summary.unanswered == (2,)


def test_an_item_nobody_answered_leaves_the_indices_that_need_it_none():
    answers = {item: [round(mean)] for item, mean in MEANS.items()} | {15: [None, None]}
    summary = item_means_from_answers(answers)
    indices = partial_vsm_indices(summary.means)
    assert summary.unanswered == (15,)
    assert indices["uai"] is None  # UAI = 40(m18 - m15) + ...
    assert all(indices[d] is not None for d in DIMENSIONS if d != "uai")


def test_an_answer_outside_the_options_is_an_error_not_a_value():
    with pytest.raises(HofstedeDataError, match=r"item 4: answer 10 is not an option 1\.\.5"):
        item_means_from_answers({4: [2, 10]})


def test_a_distribution_gives_the_expected_answer_after_normalising():
    means = item_means_from_distributions({1: {1: 0.5, 3: 0.5}, 2: {2: 2.0, 4: 6.0}, 3: {5: 0.2}})
    assert means == pytest.approx({1: 2.0, 2: 3.5, 3: 5.0})  # (2*2 + 4*6) / 8 = 3.5


def test_a_distribution_over_codes_outside_1_to_5_or_with_no_weight_is_rejected():
    with pytest.raises(HofstedeDataError, match="item 1: option 6 is not one of 1..5"):
        item_means_from_distributions({1: {1: 0.5, 6: 0.5}})
    with pytest.raises(HofstedeDataError, match="item 2: the distribution puts no weight on any option"):
        item_means_from_distributions({2: {1: 0.0, 2: 0.0}})
    with pytest.raises(HofstedeDataError, match="item 2: probability -0.1"):
        item_means_from_distributions({2: {1: 0.6, 2: -0.1}})
    with pytest.raises(HofstedeDataError, match="item 25 is not a VSM 2013 item"):
        item_means_from_distributions({25: {1: 1.0}})


# --- reference scores and comparison ----------------------------------------------------------------


def test_spanish_is_the_mean_of_argentina_and_mexico(scores, cultures):
    # ARG: 49 46 56 86 20 62; MEX: 81 30 69 82 24 97 (pdi idv mas uai lto ivr)
    assert reference_scores("Spanish", scores, cultures) == {
        "pdi": 65.0, "idv": 38.0, "mas": 62.5, "uai": 84.0, "lto": 22.0, "ivr": 79.5,
    }  # fmt: skip


def test_arabic_uses_the_arab_countries_row_with_all_six_scores(scores, cultures):
    assert cultures["Arabic"].countries == ("ARA",)
    assert reference_scores("arabic", scores, cultures) == {
        "pdi": 80.0, "idv": 38.0, "mas": 53.0, "uai": 68.0, "lto": 23.0, "ivr": 34.0,
    }  # fmt: skip


def test_the_shipped_map_covers_every_culture_of_the_wvs_map(cultures):
    assert sorted(cultures) == sorted(read_cultures_file(DEFAULT_CULTURES_FILE))
    assert cultures["German"].countries == ("GER",) and cultures["Portuguese"].countries == ("BRA",)


def test_countries_without_a_score_on_a_dimension_leave_it_out_of_the_mean(scores):
    # Iraq and Jordan have only LTO (25, 16) and IVR (17, 43).
    iraq_jordan = {"Arabic": CultureCountries(("IRQ", "JOR"))}
    assert reference_scores("Arabic", scores, iraq_jordan) == {"lto": 20.5, "ivr": 30.0}
    germany_both = {"German": CultureCountries(("GER", "GEE"))}  # GEE: LTO 78 and IVR 34 only
    assert reference_scores("German", scores, germany_both) == {
        "pdi": 35.0, "idv": 67.0, "mas": 66.0, "uai": 65.0, "lto": 80.5, "ivr": 37.0,
    }  # fmt: skip


def test_an_unknown_culture_is_an_error_listing_the_known_ones(scores, cultures):
    with pytest.raises(HofstedeDataError, match=r"culture 'Klingon' .*known: Arabic, Bengali"):
        reference_scores("Klingon", scores, cultures)


def test_rms_is_over_the_dimensions_the_reference_has():
    model = {"pdi": 70.0, "idv": 50.0, "mas": 50.0, "uai": 50.0, "lto": 26.5, "ivr": 22.0}
    jordan_like = {"lto": 16.0, "ivr": 43.0}
    result = compare(model, jordan_like)
    assert result.dimensions == ("lto", "ivr")
    assert result.signed_error == {"lto": 10.5, "ivr": -21.0}
    assert result.absolute_error == {"lto": 10.5, "ivr": 21.0}
    assert result.rms == pytest.approx(math.sqrt((10.5**2 + 21.0**2) / 2))  # 16.60...
    assert result.not_in_model == ()


def test_rms_over_six_dimensions_is_on_the_same_scale_as_over_two():
    reference = dict.fromkeys(DIMENSIONS, 50.0)
    everywhere_ten_off = dict.fromkeys(DIMENSIONS, 60.0)
    assert compare(everywhere_ten_off, reference).rms == pytest.approx(10.0)
    assert compare(everywhere_ten_off, {"lto": 50.0, "ivr": 50.0}).rms == pytest.approx(10.0)


def test_a_dimension_the_model_could_not_score_is_reported_not_compared():
    result = compare({"lto": 20.0, "ivr": None}, {"lto": 16.0, "ivr": 43.0})
    assert result.dimensions == ("lto",)
    assert result.rms == pytest.approx(4.0)
    assert result.not_in_model == ("ivr",)
    assert compare({"pdi": None}, {"ivr": 43.0}).rms is None


# --- the question and its answer --------------------------------------------------------------------


def test_an_item_is_asked_with_the_cultures_system_prompt_and_its_options():
    items = load_vsm_items()
    messages = vsm_item_messages(items[0], "German")
    assert messages[0] == {"role": "system", "content": culture_system_prompt("German")}
    assert messages[1] == {
        "role": "user",
        "content": (
            "Answer this survey question as a typical person of your culture would.\n"
            "\n"
            "In choosing an ideal job, how important would it be to you to ...\n"
            "have sufficient time for your personal or home life\n"
            "\n"
            "1. of utmost importance\n"
            "2. very important\n"
            "3. of moderate importance\n"
            "4. of little importance\n"
            "5. of very little or no importance\n"
            "\n"
            "Answer with the number of one option only."
        ),
    }


def test_a_lone_item_and_a_stem_that_is_a_question_read_as_written():
    items = load_vsm_items()
    lone = vsm_item_messages(items[14], "Korean")[-1]["content"]
    assert "\n\nHow often do you feel nervous or tense?\n\n1. always\n" in lone
    statement = vsm_item_messages(items[21], "Korean")[-1]["content"]
    assert (
        "each of the following statements?\nPersistent efforts are the surest way to results\n\n1. strongly"
        in statement
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("3", 3),
        ("**2**", 2),
        ("Answer: 4", 4),
        ("2 (very important)", 2),
        ("5 - of very little or no importance", 5),
        ("Option 3", 3),
        ("2\n\nFamily time matters a lot where I come from.", 2),
        ("Very important.", 2),
        ('"Of utmost importance"', 1),
        ("of little importance", 4),
        ("Of very little or no importance.", 5),
        ("I would say it is very important to me.", 2),
        ("1 or 2", None),
        ("very important, maybe of utmost importance", None),
        ("2.5", None),
        ("Somewhere between 2 and 3.", None),
        ("I'm sorry, as an AI I have no preferences about jobs.", None),
        ("As an AI I cannot have a boss, but 3", None),
        ("6", None),
        ("", None),
    ],
)
def test_the_parser_reads_the_option_an_importance_answer_commits_to(answer, expected):
    assert parse_vsm_answer(answer, OPTIONS_IMPORTANCE) == expected


@pytest.mark.parametrize(
    ("answer", "options", "expected"),
    [
        ("Strongly disagree.", OPTIONS_AGREE, 5),
        ("I agree", OPTIONS_AGREE, 2),
        ("I do not agree", OPTIONS_AGREE, None),
        ("Undecided", OPTIONS_AGREE, 3),
        ("Never.", OPTIONS_FREQUENCY, 5),
        ("Usually, but not always", OPTIONS_FREQUENCY, None),
        ("seldom", OPTIONS_FREQUENCY, 4),
    ],
)
def test_the_parser_reads_the_wording_of_other_scales(answer, options, expected):
    assert parse_vsm_answer(answer, options) == expected


# --- data files -------------------------------------------------------------------------------------


def test_the_shipped_items_are_the_24_with_five_options_each():
    items = load_vsm_items()
    assert [item.id for item in items] == list(range(1, 25))
    assert all(list(item.options) == [1, 2, 3, 4, 5] for item in items)
    assert items[14].stem is None and items[0].stem.startswith("In choosing an ideal job")


def test_the_shipped_scores_read_null_as_none(scores):
    assert scores["JOR"] == {"pdi": None, "idv": None, "mas": None, "uai": None, "lto": 16.0, "ivr": 43.0}
    assert scores["GRE"]["uai"] == 112.0  # published scores are not capped at 100


def one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(HofstedeDataError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_malformed_items_file_is_a_one_line_error_naming_file_and_line(tmp_path):
    good = load_vsm_items()
    lines = [item.model_dump_json() for item in good]
    path = tmp_path / "items.jsonl"

    path.write_text("\n".join([*lines[:3], "{not json", *lines[3:]]))
    assert one_line_error(load_vsm_items, path).startswith(f"{path}:4: not valid JSON")

    broken = json.loads(lines[5]) | {"options": {"1": "a", "2": "b", "3": "c", "4": "d"}}
    path.write_text("\n".join([*lines[:5], json.dumps(broken), *lines[6:]]))
    assert (
        one_line_error(load_vsm_items, path)
        == f"{path}:6: options: options must be numbered 1..5, got [1, 2, 3, 4]"
    )

    path.write_text("\n".join([*lines, lines[0]]))
    assert one_line_error(load_vsm_items, path) == f"{path}:25: item 1 appears a second time"

    path.write_text("\n".join(lines[:-2]))
    assert one_line_error(load_vsm_items, path) == f"VSM items file {path} lacks item(s) 23, 24"

    assert "does not exist" in one_line_error(load_vsm_items, tmp_path / "absent.jsonl")


def test_a_malformed_scores_file_is_a_one_line_error_naming_file_and_line(tmp_path):
    path = tmp_path / "scores.csv"
    header = "ctr;country;pdi;idv;mas;uai;ltowvs;ivr\r\n"

    path.write_text(header + "ARG;Argentina;49;46;56;86;20;62\r\nMEX;Mexico;81;30;high;82;24;97\r\n")
    assert one_line_error(load_country_scores, path) == (
        f"{path}:3: column mas holds 'high', not a score or #NULL!"
    )

    path.write_text(header + "ARG;Argentina;49;46;56;86;20\r\n")
    assert one_line_error(load_country_scores, path) == f"{path}:2: 7 fields, the header has 8"

    path.write_text("ctr;country;pdi;idv;mas;uai;ivr\nARG;Argentina;49;46;56;86;62\n")
    assert one_line_error(load_country_scores, path).startswith(f"{path}:1: header lacks column(s) ltowvs")

    path.write_text(header + "ARG;Argentina;49;46;56;86;20;62\nARG;Again;1;2;3;4;5;6\n")
    assert one_line_error(load_country_scores, path) == f"{path}:3: country code 'ARG' appears a second time"

    path.write_bytes(header.encode() + b"ARG;Argentin\xe9;1;2;3;4;5;6\n")
    assert one_line_error(load_country_scores, path) == f"{path}:2: not valid UTF-8"


def test_a_malformed_culture_map_is_a_one_line_error_naming_the_file(tmp_path, scores):
    path = tmp_path / "cultures.json"

    path.write_text('{"Spanish": {"countries": ["ARG", "ESP", "XYZ"]}}')
    message = one_line_error(load_culture_countries, path, scores)
    assert (
        message
        == f"culture countries file {path}: 'Spanish' names country code(s) 'ESP', 'XYZ', which the scores lack"
    )

    path.write_text('{"Spanish": ["ARG", "MEX"]}')
    assert one_line_error(load_culture_countries, path).startswith(
        f"culture countries file {path}: 'Spanish' must map to"
    )

    path.write_text('{"Spanish": {"countries": []}}')
    assert "non-empty list of country codes" in one_line_error(load_culture_countries, path)

    path.write_text('{\n  "Spanish": {"countries": ["ARG"],}\n}')
    assert one_line_error(load_culture_countries, path).startswith(f"{path}:2: not valid JSON")


def test_a_culture_map_built_in_code_naming_an_unknown_country_is_an_error(scores):
    with pytest.raises(HofstedeDataError, match=r"'Greek' names country code\(s\) 'GRC'"):
        reference_scores("Greek", scores, {"Greek": CultureCountries(("GRC",))})
