"""The mock server's CulturePark answers: dialogue lines, opinion lists, verdicts and rewrites that let
a whole run go through generation, extraction, verification and one rewrite.

The messages here are small stand-ins holding only the phrases the mock recognises, not the real
templates, so that these tests pin the mock and not the prompts' wording."""

from __future__ import annotations

import json

import httpx
import pytest

from agents.json_answers import MalformedOutput, load_json_answer
from bench.mock_openai_server import (
    AGAINST,
    EXTRACT_PHRASE,
    REWRITE_PHRASE,
    TURN_PHRASE,
    UNUSABLE,
    VERIFY_PHRASE,
    MockOpenAIServer,
    ServerConfig,
    culturepark_answer,
)
from tests.conftest import FAKE_KEY

ITEM = "Statement: Men make better political leaders than women do"


def turn_messages(*lines: str, item: str = ITEM) -> list[dict]:
    """A dialogue turn: the system message, an opening request, then alternating lines."""
    messages = [
        {"role": "system", "content": f"You are Sam, a teacher.\n{TURN_PHRASE} with Lee.\n{item}\nBe brief."},
        {"role": "user", "content": "Please open the conversation."},
    ]
    for number, line in enumerate(lines):
        messages.append({"role": "assistant" if number % 2 == 0 else "user", "content": line})
    if messages[-1]["role"] == "assistant":
        messages.append({"role": "user", "content": "Please go on."})
    return messages


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "You answer only with JSON."}, {"role": "user", "content": text}]


def answer(messages: list[dict]) -> str | None:
    last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    return culturepark_answer(messages, last_user)


def extraction_prompt(line: str) -> list[dict]:
    return user(f'{ITEM}\nThen Sam said: "{line}"\n\n{EXTRACT_PHRASE} Sam voiced in this line.')


def verification_prompt(*opinions: str) -> list[dict]:
    numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(opinions, 1))
    return user(f"Attitude: People agree.\n\n{VERIFY_PHRASE}? Answer per opinion.\n\n{numbered}\n")


def rewrite_prompt(opinion: str) -> list[dict]:
    return user(f"Attitude: People agree.\n\nOpinion: {opinion}\n\n{REWRITE_PHRASE}. Answer with it only.")


def verdicts(messages: list[dict]) -> list[str]:
    return [v["verdict"] for v in json.loads(answer(messages) or "")["verdicts"]]


# Conversations of one to twelve lines about three items: 36 requests the mock answers differently.
CONVERSATIONS = [
    turn_messages(*(f"line {n}" for n in range(length)), item=item)
    for item in (ITEM, "Question: How important is family in your life?", "Statement: Work is a duty")
    for length in range(12)
]


def test_a_dialogue_line_is_plain_text_about_the_item_and_the_same_for_the_same_messages():
    line = answer(turn_messages())

    assert line is not None and not line.startswith("{")
    assert 1 <= line.count(". ") + 1 <= 2 and line.endswith(".")
    assert "political and leaders" in line
    assert answer(turn_messages()) == line


def test_dialogue_lines_vary_with_the_conversation():
    lines = [answer(messages) for messages in CONVERSATIONS]

    assert len(set(lines)) >= 30


def test_about_one_line_in_five_speaks_against_the_item():
    against = [AGAINST in (answer(messages) or "") for messages in CONVERSATIONS]
    many = [
        AGAINST in (answer(turn_messages(*(f"line {n}" for n in range(length)), f"reply {seed}")) or "")
        for seed in range(20)
        for length in range(10)
    ]

    assert any(against)
    assert 0.1 < sum(many) / len(many) < 0.3


def test_extraction_lists_the_quoted_lines_sentences_in_the_first_person_without_questions():
    line = "Is that fair? I think leaders should be chosen for merit. In my town women run the council. We agree."

    opinions = json.loads(answer(extraction_prompt(line)) or "")["opinions"]

    assert opinions == [
        "I think leaders should be chosen for merit.",
        "I can say that in my town women run the council.",
    ]


def test_extraction_reads_a_line_that_quotes_someone_itself():
    line = 'My father said "duty first" and I believe he was right.'

    opinions = json.loads(answer(extraction_prompt(line)) or "")["opinions"]

    assert opinions == ['I can say that my father said "duty first" and I believe he was right.']


def test_a_line_with_only_a_question_has_no_opinion():
    assert json.loads(answer(extraction_prompt("What do you think?")) or "") == {"opinions": []}


def test_verdicts_contradict_the_against_view_find_fragments_unrelated_and_entail_the_rest():
    prompt = verification_prompt(
        f"I {AGAINST} that family matters much at all.",
        "I agree.",
        "I think family should always come first for everyone.",
    )

    assert json.loads(answer(prompt) or "") == {
        "verdicts": [
            {"index": 1, "verdict": "contradict"},
            {"index": 2, "verdict": "unrelated"},
            {"index": 3, "verdict": "entail"},
        ]
    }


def test_a_rewrite_takes_the_negation_out_so_that_verification_entails_it():
    rewritten = answer(rewrite_prompt(f"I {AGAINST} that family matters, because times change."))

    assert rewritten == "I believe that family matters, because times change."
    assert verdicts(verification_prompt(rewritten)) == ["entail"]


def test_an_against_line_goes_through_extraction_verification_and_rewrite():
    line = next(text for messages in CONVERSATIONS if AGAINST in (text := answer(messages) or ""))
    opinions = json.loads(answer(extraction_prompt(line)) or "")["opinions"]

    first = verdicts(verification_prompt(*opinions))
    assert first[0] == "contradict" and "contradict" not in first[1:]
    rewritten = answer(rewrite_prompt(opinions[0]))
    assert AGAINST not in rewritten
    assert verdicts(verification_prompt(rewritten)) == ["entail"]


def test_other_requests_are_not_culturepark_ones():
    assert answer(user("Sentence: Jobs are scarce.\nRewrite it in 3 different ways.")) is None
    assert answer(user("Sentence: Jobs are scarce.\n1. Posts are scarce.")) is None


def chat(server: MockOpenAIServer, messages: list[dict], schema: str | None = None) -> str:
    body: dict = {"model": "mock-model", "messages": messages}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": schema, "schema": {}}}
    reply = httpx.post(
        f"{server.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {FAKE_KEY}"}
    )
    assert reply.status_code == 200
    return reply.json()["choices"][0]["message"]["content"]


@pytest.mark.integration
def test_the_server_answers_culturepark_requests_and_logs_them():
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        line = chat(server, turn_messages())
        opinions = chat(server, extraction_prompt(line), "ExtractedOpinions")
        checked = chat(
            server, verification_prompt("I think family should come first."), "EquivalenceVerdicts"
        )
        faults = [r.fault for r in server.requests()]

    assert line == answer(turn_messages())
    assert load_json_answer(opinions)["opinions"]
    assert json.loads(checked) == {"verdicts": [{"index": 1, "verdict": "entail"}]}
    assert faults == [None, None, None]


@pytest.mark.integration
def test_an_unusable_opinion_list_has_no_json_and_is_logged_as_unusable():
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, unusable_rate=1.0)) as server:
        opinions = chat(server, extraction_prompt("I think duty comes first."), "ExtractedOpinions")
        line = chat(server, turn_messages())  # free text is never unusable
        faults = [r.fault for r in server.requests()]

    with pytest.raises(MalformedOutput):
        load_json_answer(opinions)
    assert line == answer(turn_messages())
    assert faults == [UNUSABLE, None]
