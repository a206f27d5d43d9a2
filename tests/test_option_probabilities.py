"""Option probabilities: how likely the local models' answer is to start with each option.

An option's score is P(the answer starts with the option as a whole word or number): the option's
tokens, then a boundary (the end of the answer, or a token whose text does not start with a letter or
digit). The embedded SmolLM2 runs on both local backends (transformers in fp32, llama.cpp on the 4-bit
GGUF). It never answers a WVS question with a bare code: greedily it writes "1. " and an option's
wording ("1. Strongly agree") on every seed question, in every culture tried, on both backends. So the
greedy checks compare the most likely option with the option the greedy answer STARTS WITH, and add
prompts that ask for another option ("Choose option 4."), which the model answers "4. Strongly
disagree", "2. Agree" or "3", so that a model that always favoured "1" could not pass them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from langchain_core.messages import convert_to_messages

from agents.providers.option_scoring import (
    AnswerBoundaries,
    OptionScoringError,
    ScoresOptions,
    answer_boundaries,
    answer_start_logprob,
    checked_messages,
    continues_a_word,
    normalised,
)
from evals.alignment import question_messages, seed_scale
from storage.records import Seed
from storage.seeds import load_seeds

SEEDS = Path("data/wvs/seeds.jsonl")
# Scales 1..4, 1..5 and 1..10 (anchored: only its ends are worded).
QUESTIONS = ("33", "27", "133", "160", "170")
# build-dataset's prompt for these questions, then "Choose option N." (Arabic culture's system prompt).
STEERED = (("27", 2), ("27", 3), ("27", 4), ("33", 2), ("33", 3))
ASK_FOR_TEN = [{"role": "user", "content": "Reply with the number 10 and nothing else."}]
ASK_FOR_ONE = [{"role": "user", "content": "Reply with the number 1 and nothing else."}]
ONE_TO_TEN = [str(code) for code in range(1, 11)]


def leading_option(answer: str, options: Sequence[str]) -> str | None:
    """The option the answer starts with as a whole word or number: "1. Strongly agree" and "1" start
    with "1", "10" does not (this is the definition the probabilities follow, read on the text)."""
    for option in options:
        rest = answer[len(option) :]
        if answer.startswith(option) and not (rest and rest[0].isalnum()):
            return option
    return None


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
    for ask in (chat.option_probabilities, chat.answer_start_logprobs):
        with pytest.raises(OptionScoringError, match=message) as caught:
            await ask(messages, options)
        assert "\n" not in str(caught.value)


def test_messages_are_passed_on_as_plain_role_and_content():
    assert checked_messages([{"role": "user", "content": "hi", "name": "x"}]) == [
        {"role": "user", "content": "hi"}
    ]


# A toy vocabulary: its end token's text starts with a letter, so only being an end makes it a boundary.
TOY_PIECES = ["end", "1", "0", ".", " ", "\n", "1.", "1)", "a", "Strong", " agree", "\ufffd", "", "10"]
TOY_ENDS = [0]


def toy_id(text: str) -> int:
    return TOY_PIECES.index(text)


def test_a_boundary_is_an_end_token_or_a_token_whose_text_does_not_start_with_a_letter_or_digit():
    boundaries = answer_boundaries(TOY_PIECES, TOY_ENDS)
    boundary_texts = {TOY_PIECES[token] for token in np.flatnonzero(boundaries.is_boundary)}
    # U+FFFD: part of a multi-byte character, maybe of a letter, so no boundary is seen there.
    assert boundary_texts == {"end", ".", " ", "\n", " agree", ""}
    assert not continues_a_word(".") and continues_a_word("0") and continues_a_word("ä")


def test_ids_past_the_tokenizer_are_never_boundaries_and_ends_past_it_are_ignored():
    boundaries = answer_boundaries(["1", "."], [1, 5], vocab_size=4)
    assert boundaries.is_boundary.tolist() == [False, True, False, False]


def test_tokens_that_write_an_options_last_token_and_a_boundary_at_once_are_found():
    boundaries = answer_boundaries(TOY_PIECES, TOY_ENDS)
    assert sorted(boundaries.merged_with(toy_id("1"))) == [toy_id("1."), toy_id("1)")]
    assert boundaries.merged_with(toy_id("a")) == ()  # "a" then nothing merged: none in this vocabulary
    assert boundaries.merged_with(len(TOY_PIECES) + 3) == ()


def test_an_answer_starts_with_the_option_through_its_own_last_token_or_a_merged_one():
    # P(tokens) = 0.5 * 0.4, then a boundary 0.5; or, after the first token, a merged token 0.1.
    steps = [math.log(0.5), math.log(0.4)]
    both = answer_start_logprob(steps, math.log(0.5), math.log(0.1))
    assert both == pytest.approx(math.log(0.5 * 0.4 * 0.5 + 0.5 * 0.1))
    assert answer_start_logprob(steps, math.log(0.5), -math.inf) == pytest.approx(math.log(0.1))
    assert answer_start_logprob(steps, -math.inf, -math.inf) == -math.inf
    with pytest.raises(OptionScoringError, match="no tokens"):
        answer_start_logprob([], 0.0, 0.0)


# --- the embedded model's vocabulary ----------------------------------------------------------------


def hf_chat():
    from agents.providers.hf_chat import HFChat, resolve_hf_model

    return HFChat.from_plan(resolve_hf_model("local", None, flag="--model"))


def local_chat():
    from agents.providers.factory import create_chat_model

    return create_chat_model("local").chat


@pytest.fixture(scope="module")
def embedded_boundaries() -> dict[str, AnswerBoundaries]:
    return {"hf": hf_chat().answer_boundaries(), "local": local_chat().answer_boundaries()}


def token_of(boundaries: AnswerBoundaries, text: str) -> int:
    return boundaries.pieces.index(text)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_after_an_embedded_models_option_a_full_stop_a_space_and_the_end_are_boundaries(
    embedded_boundaries, backend
):
    boundaries = embedded_boundaries[backend]
    for text in (".", " ", "\n", ")", " -", "<|im_end|>"):
        assert boundaries.is_boundary[token_of(boundaries, text)], text
    for text in ("0", "5", "a", "Str", "ly"):
        assert not boundaries.is_boundary[token_of(boundaries, text)], text


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_the_embedded_vocabulary_has_no_token_of_a_digit_and_punctuation(embedded_boundaries, backend):
    """SmolLM2 writes "1." as "1", "." (each digit is a token of its own): the merged-token term of
    option_scoring is zero for its codes, which is what its module docstring says."""
    boundaries = embedded_boundaries[backend]
    for digit in "0123456789":
        assert boundaries.merged_with(token_of(boundaries, digit)) == ()


@pytest.mark.slow
@pytest.mark.integration
def test_both_backends_see_the_same_boundaries_in_the_embedded_vocabulary(embedded_boundaries):
    hf, local = embedded_boundaries["hf"], embedded_boundaries["local"]
    assert hf.pieces == local.pieces
    assert np.array_equal(hf.is_boundary, local.is_boundary)


# --- the embedded model on both backends ------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    name: str
    seed: Seed
    messages: list[dict[str, str]]
    natural: bool  # build-dataset's prompt as it is (False: a choice asked for on top of it)

    @property
    def codes(self) -> list[str]:
        return [str(code) for code in seed_scale(self.seed).codes]


def prompts() -> list[Prompt]:
    seeds = {seed.q_id: seed for seed in load_seeds(SEEDS)}
    natural = [Prompt(f"Q{q}", seeds[q], question_messages("German", seeds[q]), True) for q in QUESTIONS]
    steered = []
    for q_id, choice in STEERED:
        messages = [dict(message) for message in question_messages("Arabic", seeds[q_id])]
        messages[-1]["content"] += f"\nChoose option {choice}."
        steered.append(Prompt(f"Q{q_id}, choose {choice}", seeds[q_id], messages, False))
    return natural + steered


@dataclass
class PromptResult:
    prompt: Prompt
    codes: dict[str, float]  # "1".."4", "1".."10", ...
    greedy_answer: str  # max_tokens 12
    code_logprobs: dict[str, float] | None = None  # un-normalised (natural prompts)
    worded: dict[str, float] | None = None  # "1. Strongly agree", ... (natural prompts, every code worded)


@dataclass
class BackendResults:
    name: str
    prompts: list[PromptResult] = field(default_factory=list)
    ask_for_ten: dict[str, float] = field(default_factory=dict)
    ask_for_one: dict[str, float] = field(default_factory=dict)
    first_again: dict[str, float] = field(default_factory=dict)  # the first prompt, scored last

    @property
    def natural(self) -> list[PromptResult]:
        return [result for result in self.prompts if result.prompt.natural]


def worded_options(seed: Seed) -> list[str] | None:
    scale = seed_scale(seed)
    if len(scale.options) != len(scale.codes):
        return None
    return [f"{option.code}. {option.label}" for option in scale.options]


async def greedy(chat, messages, max_tokens: int) -> str:
    from agents.providers.local_llm import LocalLlamaChat

    # llama.cpp's default repeat penalty (1.1) could change the greedy choice; probabilities are the raw model's.
    extra = {"temperature": 0, "repeat_penalty": 1.0} if isinstance(chat, LocalLlamaChat) else {}
    reply = await chat.ainvoke(convert_to_messages(messages), max_tokens=max_tokens, **extra)
    return reply.text


async def run_backend(name: str, chat) -> BackendResults:
    assert isinstance(chat, ScoresOptions)
    results = BackendResults(name)
    for prompt in prompts():
        result = PromptResult(
            prompt,
            await chat.option_probabilities(prompt.messages, prompt.codes),
            greedy_answer=await greedy(chat, prompt.messages, 12),
        )
        if prompt.natural:
            result.code_logprobs = await chat.answer_start_logprobs(prompt.messages, prompt.codes)
            worded = worded_options(prompt.seed)
            if worded is not None:
                result.worded = await chat.option_probabilities(prompt.messages, worded)
        results.prompts.append(result)
    results.ask_for_ten = await chat.option_probabilities(ASK_FOR_TEN, ONE_TO_TEN)
    results.ask_for_one = await chat.option_probabilities(ASK_FOR_ONE, ONE_TO_TEN)
    first = results.prompts[0]
    results.first_again = await chat.option_probabilities(first.prompt.messages, first.prompt.codes)
    return results


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
    for result in results[backend].prompts:
        assert list(result.codes) == result.prompt.codes
        for probabilities in (result.codes, result.worded):
            if probabilities is None:
                continue
            assert math.fsum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
            assert all(0.0 <= p <= 1.0 for p in probabilities.values())
        if result.code_logprobs is not None:
            assert normalised(result.code_logprobs) == pytest.approx(result.codes, abs=1e-12)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_one_and_ten_are_told_apart_by_what_follows_the_one(results, backend):
    """ "10" starts with the token "1": without a boundary after it, "1" would score at least as high
    as "10". Asked for 10, the model must make "10" the likelier answer, and asked for 1, "1"."""
    ten_point = next(r for r in results[backend].prompts if seed_scale(r.prompt.seed).high == 10)
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
def test_the_most_likely_option_is_the_one_the_greedy_answer_starts_with(results, backend):
    leads = []
    for result in results[backend].prompts:
        lead = leading_option(result.greedy_answer, result.prompt.codes)
        if lead is not None:
            assert most_likely(result.codes) == lead, (result.prompt.name, result.greedy_answer)
            leads.append(lead)
        worded_lead = leading_option(result.greedy_answer, list(result.worded or ()))
        if worded_lead is not None:
            assert most_likely(result.worded) == worded_lead, (result.prompt.name, result.greedy_answer)
    assert len(leads) >= 7, f"only {len(leads)} greedy answers started with an option"
    # The model favours "1" on every natural prompt: a check only of those could not tell this apart
    # from a scorer that always picks the first option.
    assert set(leads) - {"1"}, f"every greedy answer started with 1: {leads}"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_an_answer_like_1_strongly_agree_makes_its_number_the_most_likely_code(results, backend):
    """The model answers build-dataset's prompts with a code and its wording ("1. Strongly agree"), not
    a bare code: that number is the most likely code. And the codes' un-normalised probabilities are a
    real share of the model's answers (0.27-0.55 on these prompts; the rest are sentences such as
    "I ..." or "The ..."), where a bare code then the end of the answer is a rare answer of this model.
    """
    worded_answers = 0
    for result in results[backend].natural:
        scale = seed_scale(result.prompt.seed)
        for option in scale.options:
            if result.greedy_answer.lower().startswith(f"{option.code}. {option.label}".lower()):
                worded_answers += 1
                assert most_likely(result.codes) == str(option.code), result.prompt.name
                covered = math.fsum(math.exp(logprob) for logprob in result.code_logprobs.values())
                assert covered > 0.2, (result.prompt.name, covered)
    assert worded_answers >= 3, f"only {worded_answers} greedy answers were a code and its wording"


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["hf", "local"])
def test_a_question_gets_the_same_probabilities_whatever_ran_before(results, backend):
    """llama.cpp reuses the prefix its context holds; the result must not depend on what that was."""
    assert results[backend].first_again == results[backend].prompts[0].codes


@pytest.mark.slow
@pytest.mark.integration
def test_both_backends_mostly_agree_on_the_most_likely_code(results, capsys):
    pairs = list(zip(results["hf"].prompts, results["local"].prompts, strict=True))
    agreeing = sum(most_likely(hf.codes) == most_likely(local.codes) for hf, local in pairs)
    with capsys.disabled():
        print(f"\nhf:local and local agree on the most likely code of {agreeing} of {len(pairs)} prompts")
    assert agreeing / len(pairs) >= 0.5
