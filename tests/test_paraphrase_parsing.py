"""The paraphrase parser takes whatever a model wrote and keeps only usable rewrites."""

from agents.paraphraser import parse_paraphrases, render_paraphrase_request

SEED = "On the whole, men make better political leaders than women do"


def test_numbered_list_with_chatter_is_parsed():
    raw = (
        "Here are five rewrites of the sentence:\n\n"
        "1. Generally, men are better political leaders than women.\n"
        "2) Men, on the whole, lead in politics better than women do.\n"
        '3. "Overall, men make superior political leaders compared to women."\n'
        "I hope these help!"
    )
    assert parse_paraphrases(raw, SEED) == [
        "Generally, men are better political leaders than women.",
        "Men, on the whole, lead in politics better than women do.",
        "Overall, men make superior political leaders compared to women.",
    ]


def test_bullets_labels_and_quotes_are_stripped():
    raw = (
        "- Rewritten sentence: Men tend to be better political leaders than women.\n"
        "* **Paraphrase 2:** 'As a rule, men lead politically better than women.'\n"
        "• “In general men make better politicians than women.”"
    )
    assert parse_paraphrases(raw, SEED) == [
        "Men tend to be better political leaders than women.",
        "As a rule, men lead politically better than women.",
        "In general men make better politicians than women.",
    ]


def test_items_run_together_on_one_line_are_split():
    raw = "1. Men are better political leaders than women. 2. Women are worse political leaders than men."
    assert parse_paraphrases(raw, SEED) == [
        "Men are better political leaders than women.",
        "Women are worse political leaders than men.",
    ]


def test_copies_of_the_seed_and_duplicates_are_dropped():
    raw = (
        "1. On the whole, men make better political leaders than women do.\n"
        "2. on the whole men make better political leaders than women do!\n"
        "3. Men generally make better political leaders than women.\n"
        "4. Men generally make better political leaders than women\n"
    )
    assert parse_paraphrases(raw, SEED) == ["Men generally make better political leaders than women."]


def test_empty_and_garbage_answers_give_nothing():
    assert parse_paraphrases("", SEED) == []
    assert parse_paraphrases("   \n\n", SEED) == []
    assert parse_paraphrases("1.\n2.\n3. ok\n:::\n{}", SEED) == []
    assert parse_paraphrases("Sure! Here are the sentences:", SEED) == []


def test_truncated_answer_keeps_complete_items_and_leaves_long_fragments_to_the_judge():
    raw = "1. Men are generally better political leaders than women.\n2. Politically, men lead bet"
    assert parse_paraphrases(raw, SEED) == [
        "Men are generally better political leaders than women.",
        "Politically, men lead bet",
    ]
    cut_short = "1. Men are generally better political leaders than women.\n2. Men"
    assert parse_paraphrases(cut_short, SEED) == ["Men are generally better political leaders than women."]


def test_runaway_repetition_is_dropped():
    looping = "Men are better leaders " * 40
    assert parse_paraphrases(f"1. {looping}", SEED) == []


def test_max_items_caps_the_result():
    raw = "\n".join(f"{i}. Men are better political leaders than women, reason {i}." for i in range(1, 9))
    assert len(parse_paraphrases(raw, SEED, max_items=3)) == 3


def test_request_renders_the_seed_and_count_in_the_last_user_turn():
    messages = render_paraphrase_request(SEED, 4)
    assert messages[0]["role"] == "system"
    assert messages[-1]["role"] == "user"
    assert SEED in messages[-1]["content"]
    assert "in 4 different ways" in messages[-1]["content"]
    # the few-shot answer shows exactly as many rewrites as are asked for
    example_answer = [m for m in messages if m["role"] == "assistant"][0]["content"]
    assert example_answer.splitlines()[-1].startswith("4. ")
