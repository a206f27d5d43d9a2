"""The training prompt of a WVS item, pinned word for word: training and evaluation must render the same."""

import pytest

from builders import render_wvs_prompt
from builders.prompt import is_question, wvs_messages
from builders.scales import ScaleError, parse_option_scale

AGREE4 = "1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree"


def test_a_statement_asks_for_one_option_of_its_scale():
    assert render_wvs_prompt("One of my main goals in life has been to make my parents proud", AGREE4) == (
        "Statement: One of my main goals in life has been to make my parents proud\n"
        "\n"
        "Which of these options best describes your view of the statement?\n"
        "1. Strongly agree\n"
        "2. Agree\n"
        "3. Disagree\n"
        "4. Strongly disagree\n"
        "\n"
        "Answer with the number of one option only."
    )


def test_a_question_is_asked_as_a_question():
    prompt = render_wvs_prompt(
        "How frequently do the following things occur in your neighborhood: Robberies",
        "1. Very frequently 2. Quite frequently 3. Not frequently 4. Not at all frequently",
    )
    assert prompt == (
        "Question: How frequently do the following things occur in your neighborhood: Robberies\n"
        "\n"
        "Which of these options best describes your answer to the question?\n"
        "1. Very frequently\n"
        "2. Quite frequently\n"
        "3. Not frequently\n"
        "4. Not at all frequently\n"
        "\n"
        "Answer with the number of one option only."
    )


def test_a_scale_named_at_its_ends_asks_for_a_whole_number_in_range():
    prompt = render_wvs_prompt(
        "We depend too much on science and not enough on faith.",
        "1. Completely disagree 10. Completely agree ",
    )
    assert prompt == (
        "Statement: We depend too much on science and not enough on faith.\n"
        "\n"
        "On a scale from 1 to 10, where does your view of the statement lie?\n"
        "1. Completely disagree\n"
        "10. Completely agree\n"
        "\n"
        "Answer with one whole number from 1 to 10 only."
    )


def test_q31_is_shown_with_the_repaired_numbering():
    prompt = render_wvs_prompt(
        "Men make better business executives", "1. Strongly agree 2. agree 4. Disagree 4. Strongly disagree"
    )
    assert "3. Disagree\n4. Strongly disagree\n" in prompt


def test_whitespace_in_the_text_is_collapsed():
    assert render_wvs_prompt("  Work is a\n duty  ", AGREE4).startswith("Statement: Work is a duty\n")


def test_a_bad_option_string_is_an_error_not_a_prompt():
    with pytest.raises(ScaleError):
        render_wvs_prompt("Work is a duty", "agree / disagree")


def test_the_chat_carries_the_culture_system_prompt_before_the_same_user_prompt():
    messages = wvs_messages("Chinese", "Work is a duty towards society", parse_option_scale(AGREE4))
    assert messages[0] == {
        "role": "system",
        "content": "You are a Chinese chatbot that knows Chinese culture very well.",
    }
    assert messages[1] == {
        "role": "user",
        "content": render_wvs_prompt("Work is a duty towards society", AGREE4),
    }
    assert len(messages) == 2


def test_the_article_follows_the_culture_name():
    system = wvs_messages("English", "Work is a duty", parse_option_scale(AGREE4))[0]["content"]
    assert system == "You are an English chatbot that knows English culture very well."


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("When jobs are scarce, men should have more right to a job than women", False),
        ("Whenever science and religion conflict, religion is always right", False),
        ("Homosexual couples are as good parents as other couples", False),
        ("Is it a duty towards society to have children", True),
        ("Would you say that work should always come first?", True),
        (
            "In your view, how often do the following things occur in this country's elections: Votes are counted fairly",
            True,
        ),
        ("Regarding your neighborhood, how frequent are the following: Robberies", True),
        ("People who do not work turn lazy: agree or disagree", False),
    ],
)
def test_questions_are_told_from_statements(text, question):
    assert is_question(text) is question
