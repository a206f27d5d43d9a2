"""CulturePark's agents: the attitude sentence, the personas and their turns, opinion extraction,
verification and rewriting, each rendered and parsed offline (models are scripted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.attitude import Attitude, attitude_of
from agents.dialogue import (
    NAMES,
    WINDOW_LINES,
    Persona,
    Utterance,
    parse_utterance,
    personas,
    render_turn,
)
from agents.json_answers import MalformedOutput
from agents.opinions import MAX_OPINIONS, extract_opinions, parse_opinions, render_extraction
from agents.verifier import OpinionVerifier, parse_rewrite, render_rewrite, rewrite_opinion
from builders.scales import parse_option_scale
from storage.records import Seed
from tests.fakes import scripted_model

SEEDS_FILE = Path(__file__).resolve().parent.parent / "data" / "wvs" / "seeds.jsonl"
AGREE_4 = "1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree"
PARENTS = Seed(
    q_id="27", q_content="One of my main goals in life has been to make my parents proud", option=AGREE_4
)
FAMILY = Seed(
    q_id="1",
    q_content="How important is family in your life?",
    option="1. Very important 2. Rather important 3. Not very important 4. Not at all important",
)
SCIENCE = Seed(
    q_id="158",
    q_content="Science and technology are making our lives healthier, easier, and more comfortable.",
    option="1. Completely disagree 10. Completely agree ",
)
SCARCE_JOBS = Seed(
    q_id="33",
    q_content="When jobs are scarce, men should have more right to a job than women",
    option="1. Strongly agree 2. agree 3. Neither agree nor disagree 4. Disagree 5. Disagree strongly",
)


def all_seeds() -> list[Seed]:
    return [Seed.model_validate_json(line) for line in SEEDS_FILE.read_text().splitlines() if line.strip()]


def arabic(seed: Seed = PARENTS, label: int = 1) -> Attitude:
    attitude = attitude_of("Arabic", seed, label)
    assert attitude is not None
    return attitude


# --- attitude -------------------------------------------------------------------------------------


def test_agreement_labels_state_the_cultures_stance_on_the_statement():
    assert arabic(PARENTS, 1).statement == (
        "People of Arabic culture strongly agree with the statement: "
        "One of my main goals in life has been to make my parents proud."
    )
    assert arabic(PARENTS, 3).answer == "Disagree"
    assert arabic(PARENTS, 3).statement.startswith("People of Arabic culture disagree with the statement: ")
    assert "neither agree nor disagree with the statement" in arabic(SCARCE_JOBS, 3).statement
    assert "disagree strongly with the statement" in arabic(SCARCE_JOBS, 5).statement


def test_questions_are_quoted_with_the_cultures_answer():
    attitude = attitude_of("Chinese", FAMILY, 1)
    assert attitude == Attitude(
        culture="Chinese",
        q_id="1",
        label=1,
        answer="Very important",
        statement="Asked 'How important is family in your life?', people of Chinese culture answer: Very important.",
    )


def test_an_unnamed_point_of_an_anchored_scale_is_placed_between_its_ends():
    seven = arabic(SCIENCE, 7)
    assert seven.answer == "7 on a scale from 1 (Completely disagree) to 10 (Completely agree)"
    assert seven.statement == (
        "People of Arabic culture rate the statement 'Science and technology are making our lives healthier, "
        "easier, and more comfortable' 7 on a scale from 1 (Completely disagree) to 10 (Completely agree), "
        "closer to completely agree."
    )
    assert arabic(SCIENCE, 3).statement.endswith("closer to completely disagree.")
    # The named ends read like any agreement label, without a doubled full stop.
    assert arabic(SCIENCE, 10).statement == (
        "People of Arabic culture completely agree with the statement: "
        "Science and technology are making our lives healthier, easier, and more comfortable."
    )


def test_no_label_means_no_attitude_and_a_label_off_the_scale_is_refused():
    assert attitude_of("Arabic", PARENTS, None) is None
    with pytest.raises(ValueError, match="label 7"):
        attitude_of("Arabic", PARENTS, 7)


def test_every_shipped_seed_gives_a_clean_attitude_for_every_answer():
    seeds = all_seeds()
    assert len(seeds) == 50
    for seed in seeds:
        for code in parse_option_scale(seed.option).codes:
            attitude = attitude_of("Korean", seed, code)
            assert attitude is not None and attitude.answer
            text = attitude.statement
            assert "eople of Korean culture" in text, text
            assert text.endswith((".", "?")) and ".." not in text and "  " not in text, text
            assert "the your" not in text, text  # the seed file's slip in Q196-Q198 is not quoted back
    # Q31's misnumbered scale is read as the codebook's 1..4.
    executives = next(s for s in seeds if s.q_id == "31")
    assert attitude_of("Korean", executives, 3).answer == "Disagree"  # type: ignore[union-attr]


# --- personas -------------------------------------------------------------------------------------


def test_in_cultural_personas_are_two_members_who_both_hold_the_attitude():
    first, second = personas(arabic(), "in")
    assert (first.name, second.name) == NAMES["Arabic"]
    assert first.culture == second.culture == "Arabic"
    assert first.holds_attitude and second.holds_attitude
    assert personas(arabic(), "in") == (first, second)  # the same people on every run


def test_cross_cultural_personas_pair_the_delegate_with_an_english_speaker():
    delegate, counterpart = personas(arabic(), "cross")
    assert delegate.culture == "Arabic" and delegate.holds_attitude
    assert counterpart.culture == "English" and not counterpart.holds_attitude
    assert "English-speaking" in counterpart.background
    english = attitude_of("English", PARENTS, 2)
    assert english is not None
    first, second = personas(english, "cross")
    assert first.name != second.name


def test_unknown_cultures_get_fallback_names_and_a_bad_mode_is_refused():
    welsh = attitude_of("Welsh", PARENTS, 1)
    assert welsh is not None
    assert [p.name for p in personas(welsh, "in")] == ["Alex", "Sam"]
    with pytest.raises(ValueError, match="'both'"):
        personas(arabic(), "both")  # type: ignore[arg-type]


def test_a_culture_description_is_shortened_to_its_first_sentence():
    context = "Arab culture is the culture of the Arabs. It spans many countries. " * 3
    first, second = personas(arabic(), "in", context)
    assert first.background.endswith("Arab culture is the culture of the Arabs.")
    assert "many countries" not in first.background
    assert personas(arabic(), "cross", context)[1].background.count("Arab") == 0
    assert personas(arabic(), "in")[0].background == "a person of Arabic culture who knows it well."


# --- turns ----------------------------------------------------------------------------------------


def talk(pair: tuple[Persona, Persona], lines: int) -> list[Utterance]:
    return [Utterance(i % 2, f"Line {i} by {pair[i % 2].name}.") for i in range(lines)]


def roles(messages: list[dict]) -> list[str]:
    return [m["role"] for m in messages]


def test_the_opener_is_asked_to_open_the_conversation():
    pair = personas(arabic(), "cross")
    messages = render_turn(PARENTS, arabic(), pair, 0, [], style="guided", turn=0, turns=7)
    assert roles(messages) == ["system", "user"]
    system = messages[0]["content"]
    assert "You are taking part in a conversation about this question from the World Values Survey" in system
    assert "You are Layla" in system and "Emily" in system
    assert "Statement: One of my main goals in life has been to make my parents proud" in system
    assert "Strongly agree" in system and "defend it with your own reasons and experience" in system
    assert "open the conversation with Emily" in messages[1]["content"]


def test_own_lines_are_assistant_messages_and_the_others_are_user_messages():
    pair = personas(arabic(), "cross")
    transcript = talk(pair, 3)
    # Emily (speaker 1) answers Layla's second line.
    messages = render_turn(PARENTS, arabic(), pair, 1, transcript, style="free", turn=1, turns=7)
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "Line 0 by Layla."),
        ("assistant", "Line 1 by Emily."),
        ("user", "Line 2 by Layla."),
    ]
    # Layla (speaker 0) sees her own first line after the request that opened the talk.
    messages = render_turn(PARENTS, arabic(), pair, 0, transcript[:2], style="free", turn=1, turns=7)
    assert roles(messages) == ["system", "user", "assistant", "user"]
    assert "open the conversation" in messages[1]["content"]
    assert messages[-1]["content"] == "Line 1 by Emily."


def test_the_counterpart_is_not_given_the_attitude():
    pair = personas(arabic(), "cross")
    system = render_turn(PARENTS, arabic(), pair, 1, talk(pair, 1), style="free", turn=0, turns=7)[0][
        "content"
    ]
    assert "Strongly agree" not in system
    assert "your own honest view" in system


@pytest.mark.parametrize("mode", ["in", "cross"])
@pytest.mark.parametrize("style", ["guided", "free"])
def test_every_turn_of_a_dialogue_alternates_and_ends_with_the_other_speaker(mode, style):
    pair = personas(arabic(), mode)
    transcript = talk(pair, 14)
    for line in range(14):
        messages = render_turn(
            PARENTS, arabic(), pair, line % 2, transcript[:line], style=style, turn=line // 2, turns=7
        )
        chat = roles(messages)
        assert chat[0] == "system" and chat[1] == "user" and chat[-1] == "user"
        assert all(a != b for a, b in zip(chat[1:], chat[2:], strict=False)), chat
        moderated = ["Moderator" in m["content"] for m in messages]
        if style == "free":
            assert not any(moderated)
            if line:
                assert messages[-1]["content"] == transcript[line - 1].text
        elif line:
            assert moderated == [False] * (len(messages) - 1) + [True]
            assert messages[-1]["content"].startswith(transcript[line - 1].text)


def test_guided_hints_change_by_turn_and_the_last_turn_asks_for_a_summary():
    pair = personas(arabic(), "in")
    transcript = talk(pair, 14)

    def hint(line: int) -> str:
        messages = render_turn(
            PARENTS, arabic(), pair, line % 2, transcript[:line], style="guided", turn=line // 2, turns=7
        )
        return messages[-1]["content"].split("(Moderator:")[1]

    hints = [hint(line) for line in range(1, 12, 2)]
    assert len(set(hints)) == len(hints)
    assert "last turn" in hint(12) and "last turn" in hint(13)


def test_a_long_dialogue_shows_only_its_latest_lines_and_fits_a_small_context():
    pair = personas(arabic(), "cross", "Arab culture is the culture of the Arabs. " * 20)
    long_line = "I think family matters because it is where we learn our values and our duties. " * 12
    transcript = [Utterance(i % 2, f"{i}: {long_line}") for i in range(13)]
    messages = render_turn(PARENTS, arabic(), pair, 1, transcript, style="guided", turn=6, turns=7)
    shown = [m["content"] for m in messages[2:]]
    assert len(shown) == WINDOW_LINES and shown[0].startswith("7: ")
    assert messages[1]["content"] == "(The start of the conversation is left out.)"
    # About four characters a token; 1500 tokens leave room for the answer in SmolLM2's 2048.
    assert sum(len(m["content"]) for m in messages) / 3.5 < 1500


# --- parsing a line -------------------------------------------------------------------------------

PAIR = (
    Persona("Layla", "Arabic", "a person of Arabic culture.", True),
    Persona("Emily", "English", "a person from an English-speaking culture.", False),
)


@pytest.mark.parametrize(
    "raw",
    [
        "Layla: Family comes first for me.",
        "**Layla:** Family comes first for me.",
        "Layla (smiling): Family comes first for me.",
        '"Family comes first for me."',
        "*smiles warmly* Family comes first for me. *nods*",
        "Family comes first\nfor me.",
        "Family comes first for me.<|im_end|>",
        "Family comes first for me.\nEmily: But what about freedom?\nLayla: Freedom has limits.",
        "Layla: Family comes first for me.\n\n**Emily:** I see it differently.",
        "Family comes first for me. (Moderator: Give an example.)",
    ],
)
def test_a_line_is_cleaned_of_names_quotes_stage_directions_and_continuations(raw):
    assert parse_utterance(raw, PAIR, 0) == "Family comes first for me."
    assert parse_utterance(raw, PAIR) == "Family comes first for me."


def test_without_the_speaker_either_name_may_open_the_line():
    assert parse_utterance("Emily: Tell me more.", PAIR) == "Tell me more."
    assert parse_utterance("Emily: Tell me more.", PAIR, 1) == "Tell me more."


def test_emphasis_is_kept_as_plain_words():
    assert parse_utterance("I **really** believe it.", PAIR) == "I really believe it."


@pytest.mark.parametrize("raw", ["", "   ", "*nods*", "Layla:", "Emily: Tell me more.", '""', "<|im_end|>"])
def test_a_line_with_nothing_of_the_speaker_left_is_refused(raw):
    with pytest.raises(ValueError):
        parse_utterance(raw, PAIR, 0)


# --- opinions -------------------------------------------------------------------------------------


def test_the_extraction_prompt_shows_the_line_and_the_one_before():
    messages = render_extraction(FAMILY, PAIR[0], "Family is everything\nto me.", "Is family important?")
    user = messages[-1]["content"]
    assert "List the distinct opinions Layla voiced" in user
    assert "How important is family in your life?" in user
    assert 'The other person said: "Is family important?"' in user
    assert 'Layla said: "Family is everything to me."' in user
    assert "The other person" not in render_extraction(FAMILY, PAIR[0], "Hi.", None)[-1]["content"]


def test_opinions_are_read_from_fenced_json_and_from_a_bare_list():
    fenced = (
        '```json\n{"opinions": ["I think family comes first.", "I believe parents deserve respect."]}\n```'
    )
    assert parse_opinions(fenced) == ["I think family comes first.", "I believe parents deserve respect."]
    assert parse_opinions('Sure: ["I think family comes first."]') == ["I think family comes first."]


def test_a_truncated_answer_keeps_its_complete_opinions():
    cut_mid_sentence = '{"opinions": ["I think family comes first.", "I believe that parents des'
    assert parse_opinions(cut_mid_sentence) == ["I think family comes first."]
    cut_after_sentence = '{"opinions": ["I think family comes first.", "I believe parents deserve respect."'
    assert len(parse_opinions(cut_after_sentence)) == 2


def test_duplicates_fragments_and_surplus_opinions_are_dropped():
    answer = {
        "opinions": [
            "I think family comes first.",
            "i think family comes FIRST",
            "  ",
            "I agree.",
            "- I believe parents deserve respect.",
            *[f"I believe point number {n} matters." for n in range(10)],
        ]
    }
    kept = parse_opinions(json.dumps(answer))
    assert kept[:2] == ["I think family comes first.", "I believe parents deserve respect."]
    assert len(kept) == MAX_OPINIONS


def test_an_answer_with_no_opinions_is_empty_and_garbage_is_refused():
    assert parse_opinions('{"opinions": []}') == []
    assert parse_opinions('{"opinions": ["OK."]}') == []
    for garbage in ["I cannot list opinions.", '{"answer": 3}', '{"opinions": [1, 2]}', ""]:
        with pytest.raises(MalformedOutput):
            parse_opinions(garbage)


async def test_extraction_is_one_deterministic_structured_call():
    calls = []

    def responder(messages, kwargs):
        calls.append((messages, kwargs))
        return '{"opinions": ["I think family is everything to me."]}'

    model = scripted_model(responder)
    opinions = await extract_opinions(model, FAMILY, PAIR[0], "Family is everything.", None, sample_seed=3)
    assert opinions == ["I think family is everything to me."]
    ((messages, kwargs),) = calls
    assert kwargs["temperature"] == 0.0
    assert "List the distinct opinions" in messages[-1].text
    assert model.meter.step("extract").attempts == 1


# --- verification and rewriting ---------------------------------------------------------------------


def numbered(text: str) -> list[str]:
    """The opinions listed in a verification prompt, by their number."""
    return [line.split(". ", 1)[1] for line in text.splitlines() if line[:1].isdigit() and ". " in line]


async def test_opinions_are_verified_in_batches_in_order():
    prompts_seen: list[list[str]] = []

    def responder(messages, kwargs):
        listed = numbered(messages[-1].text)
        prompts_seen.append(listed)
        verdicts = [
            {"index": i, "verdict": "contradict" if "not" in text else "entail"}
            for i, text in enumerate(listed, start=1)
        ]
        return json.dumps({"verdicts": verdicts})

    verifier = OpinionVerifier(scripted_model(responder), batch_size=4)
    opinions = [f"I do {'not ' if n % 3 == 0 else ''}care about parents {n}." for n in range(10)]
    verdicts = await verifier.verify(arabic(), opinions)
    assert [len(batch) for batch in prompts_seen] == [4, 4, 2]
    assert verdicts == ["contradict" if n % 3 == 0 else "entail" for n in range(10)]
    assert verifier.spec == "llm:scripted:test"
    await verifier.aclose()


async def test_an_opinion_left_without_a_verdict_counts_as_unrelated():
    def responder(messages, kwargs):
        user = messages[-1].text
        assert "Does each opinion agree with this attitude" in user
        assert arabic().statement in user
        return '{"verdicts": [{"index": 2, "verdict": "contradict"}, {"index": 9, "verdict": "entail"}]}'

    verifier = OpinionVerifier(scripted_model(responder))
    verdicts = await verifier.verify(arabic(), ["I a b c.", "I d e f.", "I g h i."])
    assert verdicts == ["unrelated", "contradict", "unrelated"]
    assert await verifier.verify(arabic(), []) == []


def test_the_rewrite_prompt_holds_the_opinion_and_the_attitude():
    user = render_rewrite(arabic(), "I do not care what my parents think.")[-1]["content"]
    assert "Rewrite this opinion so that it agrees with the attitude" in user
    assert "I do not care what my parents think." in user
    assert arabic().statement in user


@pytest.mark.parametrize(
    "raw",
    [
        "I want to make my parents proud.",
        'Rewritten opinion: "I want to make my parents proud."',
        "**Rewritten:** I want to make my parents proud.",
        "Here is the rewritten opinion: I want to make my parents proud.",
        "Here is the rewritten opinion:\n\n“I want to make my parents proud.”\nThis now agrees with the attitude.",
    ],
)
def test_a_rewrite_is_cleaned_of_labels_quotes_and_explanations(raw):
    assert parse_rewrite(raw) == "I want to make my parents proud."


@pytest.mark.parametrize("raw", ["", "\n  \n", "Rewritten opinion:", '""', "Sure!"])
def test_an_empty_rewrite_is_refused(raw):
    with pytest.raises(ValueError):
        parse_rewrite(raw)


async def test_rewrite_opinion_returns_the_cleaned_text():
    model = scripted_model(lambda messages, kwargs: 'Rewritten: "I want my parents to be proud of me."')
    text = await rewrite_opinion(model, arabic(), "I do not care what my parents think.")
    assert text == "I want my parents to be proud of me."
