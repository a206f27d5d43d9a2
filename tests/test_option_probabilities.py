"""Option probabilities: how likely the local models' whole answer is each option of a survey question.

The embedded SmolLM2 runs on both local backends (transformers in fp32, llama.cpp on the 4-bit GGUF).
It never answers a WVS question with a bare code: greedily it starts "1. " and an option's wording
("1. Strongly agree") on every German seed question, on both backends. So the check that the most likely option is what greedy decoding
answers is made with the options written as the prompt lists them as well as with bare codes, and it
counts only the questions where the greedy answer is exactly one of the options.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from langchain_core.messages import convert_to_messages

from agents.providers.option_scoring import OptionScoringError, ScoresOptions, checked_messages, normalised
from evals.alignment import question_messages, seed_scale
from storage.records import Seed
from storage.seeds import load_seeds

SEEDS = Path("data/wvs/seeds.jsonl")
# Scales 1..4, 1..5 and 1..10 (anchored: only its ends are worded).
QUESTIONS = ("33", "27", "133", "160", "170")
ASK_FOR_TEN = [{"role": "user", "content": "Reply with the number 10 and nothing else."}]
ASK_FOR_ONE = [{"role": "user", "content": "Reply with the number 1 and nothing else."}]
ONE_TO_TEN = [str(code) for code in range(1, 11)]


# --- without a model --------------------------------------------------------------------------------


def test_probabilities_are_a_softmax_that_survives_very_negative_scores():
    probabilities = normalised({"1": -1000.0, "2": -1000.0 - math.log(3), "3": -math.inf})
    assert probabilities == pytest.approx({"1": 0.75, "2": 0.25, "3": 0.0})
    assert list(probabilities) == ["1", "2", "3"]


def test_scores_that_leave_no_option_possible_are_refused():
    with pytest.raises(OptionScoringError, match="every option has log-probability -inf"):
        normalised({"1": -math.inf, "2": -math.inf})
    with pytest.raises(OptionScoringError, match="option '2' has log-probability nan"):
        normalised({"1": 0.0, "2": math.nan})


@pytest.mark.parametrize(
    ("messages", "options", "message"),
    [
        ([{"role": "user", "content": "?"}], [], "none given"),
        ([{"role": "user", "content": "?"}], ["1", "1"], "option '1' is given twice"),
        ([{"role": "user", "content": "?"}], ["1", ""], "option 1 is ''"),
        ([{"role": "user", "content": "?"}], "12", "got one string"),
        ([], ["1"], "messages: none given"),
        ([{"role": "robot", "content": "?"}], ["1"], "message 0 is"),
        (
            [{"role": "user", "content": "?"}, {"role": "assistant", "content": "1"}],
            ["1"],
            "the last message",
        ),
    ],
)
async def test_bad_requests_are_refused_in_one_line_before_any_model_runs(messages, options, message):
    from agents.providers.local_llm import LocalLlamaChat

    chat = LocalLlamaChat(model_path="/nonexistent.gguf")  # never loaded: the request fails first
    with pytest.raises(OptionScoringError, match=message) as caught:
        await chat.option_probabilities(messages, options)
    assert "\n" not in str(caught.value)


def test_messages_are_passed_on_as_plain_role_and_content():
    assert checked_messages([{"role": "user", "content": "hi", "name": "x"}]) == [
        {"role": "user", "content": "hi"}
    ]


# --- the embedded model on both backends ------------------------------------------------------------


@dataclass
class QuestionResult:
    seed: Seed
    codes: dict[str, float]  # bare codes: "1".."4", "1".."10", ...
    greedy_code_answer: str  # max_tokens 3
    worded: dict[str, float] | None = None  # "1. Strongly agree", ... (when every code is worded)
    greedy_worded_answer: str | None = None  # max_tokens 12, only when it stopped by itself


@dataclass
class BackendResults:
    name: str
    questions: list[QuestionResult] = field(default_factory=list)
    ask_for_ten: dict[str, float] = field(default_factory=dict)
    ask_for_one: dict[str, float] = field(default_factory=dict)
    first_again: dict[str, float] = field(default_factory=dict)  # the first question, scored last


def worded_options(seed: Seed) -> list[str] | None:
    scale = seed_scale(seed)
    if len(scale.options) != len(scale.codes):
        return None
    return [f"{option.code}. {option.label}" for option in scale.options]


async def greedy(chat, messages, max_tokens: int) -> tuple[str, str]:
    from agents.providers.local_llm import LocalLlamaChat

    # llama.cpp's default repeat penalty (1.1) could change the greedy choice; probabilities are the raw model's.
    extra = {"temperature": 0, "repeat_penalty": 1.0} if isinstance(chat, LocalLlamaChat) else {}
    reply = await chat.ainvoke(convert_to_messages(messages), max_tokens=max_tokens, **extra)
    return reply.text, reply.response_metadata["finish_reason"]


async def run_backend(name: str, chat) -> BackendResults:
    assert isinstance(chat, ScoresOptions)
    seeds = {seed.q_id: seed for seed in load_seeds(SEEDS)}
    results = BackendResults(name)
    for q_id in QUESTIONS:
        seed = seeds[q_id]
        messages = question_messages("German", seed)
        codes = [str(code) for code in seed_scale(seed).codes]
        probabilities = await chat.option_probabilities(messages, codes)
        result = QuestionResult(seed, probabilities, greedy_code_answer=(await greedy(chat, messages, 3))[0])
        worded = worded_options(seed)
        if worded is not None:
            text, finish = await greedy(chat, messages, 12)
            result.greedy_worded_answer = text if finish == "stop" else None
            result.worded = await chat.option_probabilities(messages, worded)
        results.questions.append(result)
    results.ask_for_ten = await chat.option_probabilities(ASK_FOR_TEN, ONE_TO_TEN)
    results.ask_for_one = await chat.option_probabilities(ASK_FOR_ONE, ONE_TO_TEN)
    first = results.questions[0]
    results.first_again = await chat.option_probabilities(
        question_messages("German", first.seed), list(first.codes)
    )
    return results


def hf_chat():
    from agents.providers.hf_chat import HFChat, resolve_hf_model

    return HFChat.from_plan(resolve_hf_model("local", None, flag="--model"))


def local_chat():
    from agents.providers.factory import create_chat_model

    return create_chat_model("local").chat


@pytest.fixture(scope="module")
def results() -> dict[str, BackendResults]:
    """Every backend's answers, computed once for the module (loading and running the models is the cost)."""

    async def both() -> dict[str, BackendResults]:
        return {"hf": await run_backend("hf", hf_chat()), "local": await run_backend("local", local_chat())}

    return asyncio.run(both())


def most_likely(probabilities: dict[str, float]) -> str:
    return max(probabilities, key=probabilities.__getitem__)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_probabilities_cover_exactly_the_options_and_sum_to_one(results, backend):
    for question in results[backend].questions:
        for probabilities, options in (
            (question.codes, seed_scale(question.seed).codes),
            (question.worded, None),
        ):
            if probabilities is None:
                continue
            if options is not None:
                assert list(probabilities) == [str(code) for code in options]
            assert math.fsum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
            assert all(0.0 <= p <= 1.0 for p in probabilities.values())


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_one_and_ten_are_told_apart_by_the_end_of_the_answer(results, backend):
    """Without the end token "1" would score at least as high as "10" (it is its first token): asked for
    10, the model must make "10" the likelier answer, and asked for 1, "1"."""
    ten_point = next(q for q in results[backend].questions if seed_scale(q.seed).high == 10)
    assert ten_point.codes["1"] > 0 and ten_point.codes["10"] > 0
    assert ten_point.codes["1"] != ten_point.codes["10"]
    asked_ten, asked_one = results[backend].ask_for_ten, results[backend].ask_for_one
    assert asked_ten["10"] > asked_ten["1"]
    assert asked_one["1"] > asked_one["10"]
    assert most_likely(asked_ten) == "10"
    assert most_likely(asked_one) == "1"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_the_most_likely_option_is_what_greedy_decoding_answers(results, backend):
    checked = 0
    for question in results[backend].questions:
        if question.greedy_code_answer in question.codes:  # a bare code (this model rarely gives one)
            assert most_likely(question.codes) == question.greedy_code_answer, question.seed.q_id
            checked += 1
        if question.worded is not None and question.greedy_worded_answer in question.worded:
            assert most_likely(question.worded) == question.greedy_worded_answer, question.seed.q_id
            checked += 1
    assert checked >= 3, f"only {checked} greedy answers were exactly an option"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_a_question_gets_the_same_probabilities_whatever_ran_before(results, backend):
    """llama.cpp reuses the prefix its context holds; the result must not depend on what that was."""
    assert results[backend].first_again == results[backend].questions[0].codes


@pytest.mark.slow
@pytest.mark.integration
def test_both_backends_mostly_agree_on_the_most_likely_code(results, capsys):
    pairs = list(zip(results["hf"].questions, results["local"].questions, strict=True))
    agreeing = sum(most_likely(hf.codes) == most_likely(local.codes) for hf, local in pairs)
    with capsys.disabled():
        print(f"\nhf:local and local agree on the most likely code of {agreeing} of {len(pairs)} questions")
    assert agreeing / len(pairs) >= 0.5
