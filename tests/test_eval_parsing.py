"""The answer parser reads the label a model commits to and calls everything else invalid (None).

Each table row is (answer, expected label or None). The rule the rows pin: the label at the start of
the answer's first sentence commits (later explanations do not count); otherwise the only label the
answer names; refusals, two labels and negated mentions are invalid; "not" in a sentence is never NOT.
"""

import pytest

from evals.parsing import parse_label

OFFENSIVE = (["NOT", "OFF"], {"OFF": "offensive", "NOT": "not offensive"})
HATE = (["HS", "NOT_HS"], {"HS": "hate speech", "NOT_HS": "not hate speech"})
SPAM = (["Ham", "Spam"], {"Spam": "spam", "Ham": "not spam"})
VULGAR = (["-", "V"], {"V": "vulgar", "-": "not vulgar"})
BINARY = (
    ["0", "1"],
    {"1": "the text contains threat", "0": "the text does not contain threat"},
)
THREE = (["0", "1", "2"], {"0": "hate speech", "1": "offensive but not hate", "2": "neither"})
TARGETS = (
    ["HS1", "HS2", "HS3", "HS4", "HS5", "HS6", "NOT_HS"],
    {"HS1": "race", "HS2": "religion", "HS3": "ideology", "HS4": "disability", "HS5": "social class",
     "HS6": "gender", "NOT_HS": "not hate speech"},
)  # fmt: skip
HOF = (["HOF", "NOT"], {"HOF": "hate or offensive", "NOT": "neither"})
FINE = (
    ["grp", "ind", "non", "oth", "prof"],
    {"non": "not offensive", "prof": "untargeted profanity", "ind": "targeted at an individual",
     "grp": "targeted at a group", "oth": "other target"},
)  # fmt: skip


def check(task, table):
    labels, meanings = task
    wrong = [(answer, parse_label(answer, labels, meanings), want) for answer, want in table]
    assert [row for row in wrong if row[1] != row[2]] == []


def test_offensive_answers():
    check(
        OFFENSIVE,
        [
            ("OFF", "OFF"),
            ("NOT", "NOT"),
            ("off", "OFF"),
            ("Not.", "NOT"),
            ("The answer is OFF.", "OFF"),
            ("**OFF**", "OFF"),
            ("`NOT`", "NOT"),
            ('"OFF"', "OFF"),
            ("Label: NOT", "NOT"),
            ("label: not", "NOT"),
            ("Answer: off", "OFF"),
            ("OFF (offensive)", "OFF"),
            ("NOT (not offensive)", "NOT"),
            ("OFF - the tweet insults a politician.", "OFF"),
            ("NOT\nReason: nothing here is OFF.", "NOT"),
            ("OFF. Had it been polite it would be NOT.", "OFF"),
            ("Not offensive.", "NOT"),
            ("The text is not offensive.", "NOT"),
            ("The text is offensive.", "OFF"),
            ("OFFENSIVE", "OFF"),
            ("Sure! Based on the wording, the label is OFF.", "OFF"),
            ("ＯＦＦ", "OFF"),
            ("- OFF", "OFF"),
            ("答案是 OFF", "OFF"),
            ("الجواب: OFF", "OFF"),
            ("الجواب: not", "NOT"),
            ("정답은 OFF입니다.", "OFF"),
            ("这条推文是 NOT，因为没有侮辱。", "NOT"),
            # invalid: refusals, both labels, nothing usable, negations
            ("I cannot classify this text.", None),
            ("As an AI, I do not label tweets.", None),
            ("I'm sorry, but I can't help with that.", None),
            ("Not sure.", None),
            ("NOT sure, maybe OFF", None),
            ("I do not know.", None),
            ("I do NOT know", None),
            ("NOT OFF", None),
            ("OFF or NOT", None),
            ("OFF/NOT", None),
            ("off/not", None),
            ("It is NOT, or maybe OFF", None),
            ("The tweet mentions NOT and OFF.", None),
            ("I do not think this is offensive.", None),
            ("It isn't really offensive", None),
            ("No, it is offensive.", "OFF"),
            ("Nothing to see here.", None),
            ("NOTHING", None),
            ("OFFSIDE", None),
            ("The player was offside and got sent off.", None),
            ("The text does not say anything.", None),
            ("", None),
            ("   ", None),
            ("OFF (not offensive)", None),
        ],
    )


def test_hate_speech_answers_keep_hs_out_of_not_hs():
    check(
        HATE,
        [
            ("NOT_HS", "NOT_HS"),
            ("HS", "HS"),
            ("**HS**", "HS"),
            ("not_hs", "NOT_HS"),
            ("hs.", "HS"),
            ("The answer: NOT_HS", "NOT_HS"),
            ("This is hate speech.", "HS"),
            ("This is not hate speech.", "NOT_HS"),
            ("This isn't hate speech.", None),
            ("HS or NOT_HS", None),
            ("NOT_HS. It would be HS with a slur.", "NOT_HS"),
            ("NOT", None),
        ],
    )


def test_spam_answers():
    check(
        SPAM,
        [
            ("Spam", "Spam"),
            ("ham", "Ham"),
            ("HAM", "Ham"),
            ("This message is spam.", "Spam"),
            ("This is not spam.", "Ham"),
            ("NOT SPAM", "Ham"),
            ("Ham with spam", None),
            ("Ham, not Spam", "Ham"),  # "not Spam" is Ham's meaning
        ],
    )


def test_a_dash_label_counts_only_where_it_stands_as_the_answer():
    check(
        VULGAR,
        [
            ("-", "-"),
            ('"-"', "-"),
            ("- (not vulgar)", "-"),
            ("Label: -", "-"),
            ("V", "V"),
            ("v", "V"),
            ("Not vulgar.", "-"),
            ("The text is vulgar.", "V"),
            ("The text - a tweet - is fine", None),
            ("non-vulgar", None),
            ("-, V", None),
        ],
    )


def test_numeric_labels_count_only_where_a_number_is_the_answer():
    check(
        BINARY,
        [
            ("1", "1"),
            ("1.", "1"),
            ("0", "0"),
            ("Answer: 0", "0"),
            ("The answer is 1.", "1"),
            ("I would classify it as 1.", "1"),
            ("1 - the text threatens the reader", "1"),
            ("答案是 1", "1"),
            ("答案是1。", "1"),
            ("الجواب: 0", "0"),
            ("The text contains threat.", "1"),
            ("The text does not contain threat.", "0"),
            ("0.5", None),
            ("1.0", None),  # a number, neither label: not 1, and not the 0 after the point
            ("It scores 0.1 on my scale", None),
            ("1\nBecause the text threatens the reader.", "1"),  # a line break ends the answer's token
            ("0\n\nExplanation: no threat here", "0"),
            ("There are 2 threats in 1 sentence", None),
            ("0 or 1", None),
            ("1 0", None),
            ("10", None),
            ("I cannot say: 0 or 1", None),
        ],
    )
    check(
        THREE,
        [
            ("2", "2"),
            ("2 (neither)", "2"),
            ("Neither", "2"),
            ("Hate speech.", "0"),
            ("Offensive but not hate.", "1"),
            ("It is offensive but not hate speech", "1"),
            ("It is not offensive, but not hate either", None),
        ],
    )


def test_targets_hs1_to_hs6():
    check(
        TARGETS,
        [
            ("HS3", "HS3"),
            ("hs3", "HS3"),
            ("HS3 (ideology)", "HS3"),
            ("HS", None),
            ("HS1 HS2", None),
            ("The label is NOT_HS.", "NOT_HS"),
            ("Religion", "HS2"),
        ],
    )


def test_meanings_match_whatever_punctuation_separates_their_words():
    labels = ["0", "1"]
    meanings = {
        "1": "the text contains direct (not indirect) hostility",
        "0": "the text does not contain direct (not indirect) hostility",
    }
    assert parse_label("The text contains direct (not indirect) hostility.", labels, meanings) == "1"
    assert parse_label("The text does not contain direct, not indirect, hostility", labels, meanings) == "0"
    targets = {"HS1": "hate speech by target: race", "NOT_HS": "not hate speech"}
    assert parse_label("Hate speech by target - race", ["HS1", "NOT_HS"], targets) == "HS1"


def test_hof_and_lowercase_fine_grained_labels():
    check(HOF, [("HOF", "HOF"), ("Neither.", "NOT"), ("It is neither", None), ("hate or offensive", "HOF")])
    check(
        FINE,
        [
            ("grp", "grp"),
            ("IND", "ind"),
            ("Targeted at an individual.", "ind"),
            ("non", "non"),
            ("Not offensive", "non"),
            ("prof or oth", None),
        ],
    )


@pytest.mark.parametrize("answer", [None, 3, "\x00"])
def test_garbage_is_invalid_and_never_raises(answer):
    assert parse_label(answer, *OFFENSIVE) is None


def test_a_meaning_that_is_only_the_label_name_is_not_matched_as_a_word():
    # The registry falls back to the label itself when a task says nothing about a label.
    assert parse_label("I do not know", ["NOT", "OFF"], {"NOT": "NOT", "OFF": "OFF"}) is None
    assert parse_label("not", ["NOT", "OFF"], {"NOT": "NOT", "OFF": "OFF"}) == "NOT"


def test_an_answer_that_echoes_the_label_list_commits_to_nothing():
    meanings = {"OFF": "offensive", "NOT": "not offensive"}
    # SmolLM2's habit on the classify prompt: the options repeated, one per line.
    assert parse_label("- NOT: not offensive\n- OFF: offensive", ["NOT", "OFF"], meanings) is None
    assert parse_label("OFF\n\nNOT", ["NOT", "OFF"], meanings) is None
    assert parse_label("- NOT: not offensive", ["NOT", "OFF"], meanings) == "NOT"
