"""WVS alignment: survey distributions, model distributions, the three metrics, weak questions as a seed
file, and the files that restrict which questions are asked."""

import json
import math
from collections import Counter
from fractions import Fraction

import pytest

from builders.build import BuildSettings, build_dataset
from builders.scales import parse_option_scale
from evals.alignment import (
    AlignmentDataError,
    CultureQuestions,
    ModelAnswer,
    SurveyQuestion,
    culture_questions,
    distribution_from_samples,
    js_divergence,
    load_culture_questions,
    options_from_logprobs,
    parse_wvs_answer,
    question_messages,
    read_questions_file,
    read_validation_questions,
    scale_error,
    score_culture,
    score_question,
    survey_distribution,
    weak_questions,
    write_weak_questions,
)
from storage.records import Seed
from storage.seeds import DEFAULT_SEEDS, load_seeds
from storage.wvs_answers import CountryAnswers

AGREE4 = "1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree"
AGREE5 = "1. Strongly agree 2. agree 3. Neither agree nor disagree 4. Disagree 5. Disagree strongly"
IMMIGRATION = "2. Agree 1. Hard to say 0. Disagree"
TEN = "1. Completely disagree 10. Completely agree"
SEEDS = load_seeds(DEFAULT_SEEDS)


def seed(q_id: str, option: str = AGREE4, topic: str = "SOCIAL VALUES") -> Seed:
    return Seed(q_id=q_id, q_content=f"Statement number {q_id}", topic=topic, option=option)


def survey(
    q_id: str, distribution: dict[int, Fraction], option: str = AGREE4, culture="Test"
) -> SurveyQuestion:
    return SurveyQuestion(
        culture=culture,
        seed=seed(q_id, option),
        scale=parse_option_scale(option),
        distribution=distribution,
        n_valid_by_country={"AAA": 100},
    )


# --- Jensen-Shannon divergence ---------------------------------------------------------------------


def test_identical_distributions_have_js_divergence_zero():
    assert js_divergence({1: 0.2, 2: 0.3, 4: 0.5}, {1: Fraction(1, 5), 2: Fraction(3, 10), 4: 0.5}) == 0


def test_distributions_on_disjoint_options_have_js_divergence_one():
    assert js_divergence({1: 0.5, 2: 0.5}, {3: 0.25, 4: 0.75}) == 1


def test_js_divergence_of_a_worked_example():
    # P = (1/2, 1/2), Q = (1, 0), M = (3/4, 1/4):
    # KL(P||M) = 1/2 log2(2/3) + 1/2 log2(2) = 1 - 1/2 log2 3; KL(Q||M) = log2(4/3) = 2 - log2 3;
    # JS = (KL(P||M) + KL(Q||M)) / 2 = 3/2 - 3/4 log2 3 = 0.311278...
    assert js_divergence({1: 0.5, 2: 0.5}, {1: 1.0}) == pytest.approx(1.5 - 0.75 * math.log2(3))
    assert js_divergence({1: 0.5, 2: 0.5}, {1: 1.0}) == pytest.approx(0.311278, abs=1e-6)
    assert js_divergence({1: 1.0}, {1: 0.5, 2: 0.5}) == js_divergence({1: 0.5, 2: 0.5}, {1: 1.0})


def test_an_empty_or_negative_distribution_is_refused():
    with pytest.raises(ValueError, match="empty"):
        js_divergence({}, {1: 1.0})
    with pytest.raises(ValueError, match="-0.5"):
        js_divergence({1: -0.5, 2: 1.5}, {1: 1.0})


# --- scale error -----------------------------------------------------------------------------------


def test_scale_error_on_a_one_to_four_scale_is_the_mean_gap_over_three():
    scale = parse_option_scale(AGREE4)
    assert scale_error({1: 1.0}, {4: Fraction(1)}, scale) == 1.0
    # E[model] = 1.5, E[survey] = 3: 1.5 / (4 - 1)
    assert scale_error({1: 0.5, 2: 0.5}, {3: Fraction(1)}, scale) == pytest.approx(0.5)
    assert scale_error({2: 1.0}, {1: Fraction(1, 2), 3: Fraction(1, 2)}, scale) == 0


def test_scale_error_on_a_zero_to_two_scale_uses_its_own_codes():
    scale = parse_option_scale(IMMIGRATION)
    # E[model] = 2, E[survey] = 0.5: 1.5 / (2 - 0)
    assert scale_error({2: 1.0}, {0: Fraction(1, 2), 1: Fraction(1, 2)}, scale) == pytest.approx(0.75)


# --- mode match ------------------------------------------------------------------------------------


def test_a_tie_in_the_model_distribution_goes_to_the_lowest_code_as_in_labels():
    tied = {1: 0.2, 2: 0.4, 3: 0.4, 4: 0.0}
    assert score_question(survey("27", {2: Fraction(3, 5), 3: Fraction(2, 5)}), tied).mode_match
    missed = score_question(survey("27", {3: Fraction(3, 5), 2: Fraction(2, 5)}), tied)
    assert (missed.model_mode, missed.question.mode, missed.mode_match) == (2, 3, False)


def test_a_tie_in_the_survey_distribution_goes_to_the_lowest_code_too():
    question = survey("27", {1: Fraction(1, 2), 4: Fraction(1, 2)})
    assert question.mode == 1
    assert score_question(question, {1: 0.6, 4: 0.4}).mode_match
    assert not score_question(question, {1: 0.4, 4: 0.6}).mode_match


def test_a_model_option_off_the_scale_is_refused():
    with pytest.raises(ValueError, match="model option 5 is not on the scale 1..4"):
        score_question(survey("27", {1: Fraction(1)}), {5: 1.0})


# --- model distributions ---------------------------------------------------------------------------


def test_option_logprobs_normalise_to_probabilities_that_sum_to_one():
    probabilities = options_from_logprobs({3: math.log(0.2), 1: math.log(0.3), 2: math.log(0.1)})
    assert list(probabilities) == [1, 2, 3]
    assert math.fsum(probabilities.values()) == pytest.approx(1)
    assert probabilities == pytest.approx({1: 0.5, 2: 1 / 6, 3: 1 / 3})


def test_option_logprobs_far_below_zero_do_not_underflow():
    # exp(-1000) is 0.0 in floating point: a naive softmax divides 0 by 0 here.
    probabilities = options_from_logprobs({1: -1000.0, 2: -1001.0, 3: -math.inf})
    assert probabilities == pytest.approx(
        {1: 1 / (1 + math.exp(-1)), 2: math.exp(-1) / (1 + math.exp(-1)), 3: 0}
    )
    assert math.fsum(probabilities.values()) == pytest.approx(1)
    assert options_from_logprobs({1: -1e6, 2: -1e6}) == {1: 0.5, 2: 0.5}


def test_option_logprobs_without_any_usable_value_are_refused():
    with pytest.raises(ValueError, match="no option"):
        options_from_logprobs({})
    with pytest.raises(ValueError, match="every option"):
        options_from_logprobs({1: -math.inf, 2: -math.inf})
    with pytest.raises(ValueError, match="option 2 has log-probability nan"):
        options_from_logprobs({1: -1.0, 2: math.nan})


def test_sampled_answers_give_shares_of_the_valid_ones_and_count_the_invalid():
    distribution, invalid = distribution_from_samples([1, None, 1, 2, None], parse_option_scale(AGREE4))
    assert invalid == 2
    assert distribution == {1: 2 / 3, 2: 1 / 3, 3: 0, 4: 0}


def test_all_invalid_samples_give_no_distribution():
    assert distribution_from_samples([None, None, None], parse_option_scale(AGREE4)) == (None, 3)


def test_a_sampled_code_off_the_scale_is_a_caller_error():
    with pytest.raises(ValueError, match="answer 7 is not on the scale 0..2"):
        distribution_from_samples([2, 7], parse_option_scale(IMMIGRATION))


# --- parsing an answer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "answer", "code"),
    [
        (AGREE4, "3", 3),
        (AGREE4, "**3**", 3),
        (AGREE4, "3. Disagree", 3),
        (AGREE4, "3 (Disagree)", 3),
        (AGREE4, "Answer: 2", 2),
        (AGREE4, "Strongly agree", 1),
        (AGREE4, "I agree.", 2),
        (AGREE4, "disagree strongly", 4),
        (AGREE5, "Strongly disagree", 5),
        (AGREE5, "Neither agree nor disagree", 3),
        (TEN, "10", 10),
        (TEN, "7/10", 7),
        (TEN, "7 out of 10", 7),
        (TEN, "Completely agree", 10),
        (IMMIGRATION, "0", 0),
        (IMMIGRATION, "Hard to say", 1),
        (IMMIGRATION, "Disagree", 0),
        (IMMIGRATION, "２", 2),  # full-width digit
    ],
)
def test_an_answer_commits_to_the_option_it_names_by_number_or_wording(option, answer, code):
    assert parse_wvs_answer(answer, parse_option_scale(option)) == code


@pytest.mark.parametrize(
    ("option", "answer"),
    [
        (AGREE4, ""),
        (AGREE4, "I cannot answer that."),
        (AGREE4, "2 or 3"),
        (AGREE4, "2-3"),
        (AGREE4, "3. Agree"),  # number and wording disagree
        (AGREE4, "I do not agree"),
        (AGREE4, "1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree"),  # echoes the options
        (AGREE4, "5"),  # off the scale
        (AGREE4, "-1"),  # WVS's don't-know code
        (AGREE4, "2.5"),
        (TEN, "0.5"),
        (TEN, "7/9"),
    ],
)
def test_an_answer_naming_no_option_or_two_commits_to_none(option, answer):
    assert parse_wvs_answer(answer, parse_option_scale(option)) is None


# --- the survey side, with the real data -----------------------------------------------------------


def test_survey_distribution_keeps_valid_codes_and_weighs_countries_equally():
    scale = parse_option_scale(AGREE4)
    shares = survey_distribution(scale, {"A": Counter({2: 10, -1: 50}), "B": Counter({1: 60, 3: 40, 9: 5})})
    assert shares == {1: Fraction(3, 10), 2: Fraction(1, 2), 3: Fraction(1, 5)}
    assert survey_distribution(scale, {"A": Counter({-4: 1200})}) == {}


def test_questions_the_survey_never_asked_a_culture_are_skipped_not_scored():
    questions = load_culture_questions("Arabic", SEEDS)["Arabic"]
    assert questions.skipped == ["36", "226"]
    assert "36" not in {question.q_id for question in questions.scorable}
    assert len(questions.scorable) == len(SEEDS) - 2
    chinese = load_culture_questions("chinese", SEEDS)["Chinese"]
    assert len(chinese.skipped) == 18 and "125" in chinese.skipped


def test_a_culture_question_carries_the_survey_shares_of_all_its_countries():
    q27 = load_culture_questions("Arabic", SEEDS[:1])["Arabic"].scorable[0]
    assert q27.q_id == "27"
    assert sum(q27.distribution.values()) == 1
    assert set(q27.n_valid_by_country) == {"IRQ", "JOR"}


def test_a_country_without_loaded_answers_is_named():
    with pytest.raises(ValueError, match="no survey answers loaded for JOR"):
        culture_questions(
            "Arabic", ["IRQ", "JOR"], SEEDS[:1], {"IRQ": CountryAnswers("IRQ", DEFAULT_SEEDS, 0, {})}
        )


def test_an_unknown_culture_is_an_alignment_data_error():
    with pytest.raises(AlignmentDataError, match="unknown culture 'Klingon'"):
        load_culture_questions("Klingon", SEEDS)


# --- scoring a culture -----------------------------------------------------------------------------


def test_a_culture_averages_its_scored_questions_and_reports_the_rest():
    questions = CultureQuestions(
        culture="Test",
        scorable=[
            survey("27", {1: Fraction(1)}),
            survey("28", {4: Fraction(1)}),
            survey("29", {2: Fraction(1)}),
        ],
        skipped=["36"],
    )
    answers = {
        "27": ModelAnswer({1: 1.0}),  # exact: js 0, scale error 0, mode match
        "28": ModelAnswer({1: 1.0}, invalid=1),  # opposite end: js 1, scale error 1
        "29": ModelAnswer(None, invalid=5),  # never valid: unanswered, not scored
    }
    result = score_culture(questions, answers, samples=200)
    assert [score.q_id for score in result.scores] == ["27", "28"]
    assert result.unanswered == ["29"]
    assert result.skipped == ["36"]
    assert result.invalid_answers == 6
    assert result.mode_match.value == 0.5
    assert result.js_divergence.value == 0.5
    assert result.scale_error.value == 0.5
    assert result.js_divergence.ci[0] <= 0.5 <= result.js_divergence.ci[1]
    assert result.as_row()["js_divergence"]["value"] == 0.5


def test_a_culture_whose_model_never_answered_has_no_averages():
    questions = CultureQuestions("Test", [survey("27", {1: Fraction(1)})], [])
    result = score_culture(questions, {"27": ModelAnswer(None, invalid=3)})
    assert (result.mode_match, result.scale_error, result.js_divergence) == (None, None, None)


def test_answers_must_cover_the_scorable_questions_exactly():
    questions = CultureQuestions("Test", [survey("27", {1: Fraction(1)})], ["36"])
    with pytest.raises(ValueError, match=r"missing \['Q27'\], not scorable \['Q36'\]"):
        score_culture(questions, {"36": ModelAnswer({1: 1.0})})


# --- weak questions --------------------------------------------------------------------------------


def scored(q_id: str, model: dict[int, float], truth: dict[int, Fraction], culture="Test"):
    return score_question(survey(q_id, truth, culture=culture), model)


def test_weak_questions_are_the_furthest_from_the_survey_with_ties_broken_by_scale_error_then_id():
    scores = [
        scored("27", {1: 1.0}, {1: Fraction(1)}),  # js 0
        scored("122", {1: 1.0}, {4: Fraction(1)}),  # js 1, scale error 1
        scored("28", {1: 1.0}, {4: Fraction(1)}),  # js 1, scale error 1: before Q122 by id
        scored("29", {1: 1.0}, {2: Fraction(1)}),  # js 1, scale error 1/3
        scored("30", {1: 1.0}, {4: Fraction(1)}, culture="Other"),
    ]
    assert [row["q_id"] for row in weak_questions(scores, "Test", 3)] == ["28", "122", "29"]
    assert [row["q_id"] for row in weak_questions(scores, "Test", 10)] == ["28", "122", "29", "27"]
    with pytest.raises(ValueError, match="k must be at least 1"):
        weak_questions(scores, "Test", 0)


def test_weak_questions_written_to_a_file_load_as_a_seed_file(tmp_path):
    q31 = next(seed for seed in SEEDS if seed.q_id == "31")
    question = SurveyQuestion("Arabic", q31, parse_option_scale(q31.option), {3: Fraction(1)}, {"IRQ": 1})
    rows = weak_questions([score_question(question, {1: 1.0})], "Arabic", 5)
    assert rows == [{"topic": q31.topic, "q_id": "31", "q_content": q31.q_content, "option": q31.option}]
    path = tmp_path / "weak" / "seeds.jsonl"
    write_weak_questions(path, rows)
    assert load_seeds(path) == [q31]
    with pytest.raises(ValueError, match="no weak questions"):
        write_weak_questions(tmp_path / "empty.jsonl", [])


# --- the model is asked as it was trained ----------------------------------------------------------


@pytest.fixture(scope="module")
def arabic_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset") / "arabic"
    return build_dataset(BuildSettings(culture="Arabic", out=out, val_fraction=0.1))


def test_the_question_prompt_is_build_datasets_seed_example_without_its_answer(arabic_build):
    first = json.loads((arabic_build.settings.out / "train.jsonl").read_text().splitlines()[0])
    assert question_messages("Arabic", SEEDS[0]) == first["messages"][:2]


# --- restricting the questions ---------------------------------------------------------------------


def test_a_questions_file_names_seeds_by_id_in_seed_file_order(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("# weakest first\nQ122\n\n27\nq28\n")
    assert [seed.q_id for seed in read_questions_file(path, SEEDS)] == ["27", "28", "122"]


def test_a_seed_file_restricts_to_its_question_ids(tmp_path):
    path = tmp_path / "weak.jsonl"
    write_weak_questions(path, [{"topic": "", "q_id": "158", "q_content": "x", "option": TEN}])
    assert [seed.q_id for seed in read_questions_file(path, SEEDS)] == ["158"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Q27\nQ999\n", r"questions.txt:2: Q999 is not one of the 50 seed questions"),
        ("Q27\n\n27\n", r"questions.txt:3: Q27 is already named on line 1"),
        ("Q27 Q28\n", r"questions.txt:1: expected one question id per line \(such as Q27\), got 'Q27 Q28'"),
        ("# nothing\n\n", r"questions file .*questions.txt names no questions"),
        (
            '{"q_id": "27", "q_content": "x"}\n\n{"q_id": "999", "q_content": "y"}\n',
            r"questions.txt:3: Q999 is not",
        ),
        ('{"q_id": "27", "q_content": "x"}\nnot json\n', r"questions.txt:2: not valid JSON"),
    ],
)
def test_a_bad_questions_file_is_a_one_line_error_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "questions.txt"
    path.write_text(text)
    with pytest.raises(AlignmentDataError, match=message) as raised:
        read_questions_file(path, SEEDS)
    assert "\n" not in str(raised.value)


def test_a_missing_questions_file_is_named(tmp_path):
    with pytest.raises(AlignmentDataError, match="questions file .*absent.txt does not exist"):
        read_questions_file(tmp_path / "absent.txt", SEEDS)


def test_the_validation_questions_of_a_build_are_the_ones_it_held_out(arabic_build):
    held_out = read_validation_questions(arabic_build.settings.out, SEEDS)
    assert [seed.q_id for seed in held_out] == arabic_build.validation_q_ids
    assert len(held_out) == 5


def test_a_build_without_validation_questions_is_refused(tmp_path):
    out = tmp_path / "train-only"
    build_dataset(BuildSettings(culture="Greek", out=out))
    with pytest.raises(AlignmentDataError, match="README.md: the dataset has no validation questions"):
        read_validation_questions(out, SEEDS)


def test_a_directory_that_is_not_a_build_is_refused(tmp_path):
    with pytest.raises(AlignmentDataError, match="is not a build-dataset output"):
        read_validation_questions(tmp_path, SEEDS)
    with pytest.raises(AlignmentDataError, match="does not exist"):
        read_validation_questions(tmp_path / "absent", SEEDS)
