"""Option probabilities of OpenAI-compatible models, read from the first answer token's top_logprobs.

The reading itself is specified on hand-written top lists; the whole call (gate, retries, meter,
ledger) runs against the mock server on 127.0.0.1 through the factory, as a run makes it.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from agents.providers.chat import ResilientChatModel
from agents.providers.factory import ModelServices, _local_structured, create_chat_model
from agents.providers.openai_logprobs import (
    TOP_LOGPROBS,
    NoOptionAmongTopTokens,
    ServerGaveNoLogprobs,
    UnusableTopLogprobs,
    first_token_top_logprobs,
    logprob_request,
    option_logprobs_from_top,
    option_probabilities_from_top,
    starts_with_option,
)
from agents.providers.option_scoring import OptionScoringError, normalised
from agents.providers.resilience import CallLimits, FatalModelError, MalformedResponse, ModelCallFailed
from bench.mock_openai_server import MockOpenAIServer, ServerConfig, survey_answer, survey_top_logprobs
from storage.ledger import CallLedger
from tests.conftest import FAKE_KEY
from tests.fakes import scripted_model

SPEC = "openai:mock-model"


def top(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    """A top_logprobs list in the API's shape from (token, probability) pairs."""
    return [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in pairs]


def question(text: str, options: tuple[str, ...]) -> list[dict[str, str]]:
    listed = "\n".join(f"{code}. {wording}" for code, wording in enumerate(options, start=1))
    return [
        {"role": "system", "content": "You answer as a typical respondent."},
        {"role": "user", "content": f"{text}\n{listed}\nAnswer with the number of one option only."},
    ]


FAMILY = question("How important is family in your life?", ("Very", "Rather", "Not very", "Not at all"))
WORK = question("How important is work in your life?", ("Very", "Rather", "Not very", "Not at all"))
FOUR = ["1", "2", "3", "4"]


# --- reading a top list -------------------------------------------------------------------------------


def test_the_request_asks_for_the_twenty_likeliest_alternatives_of_one_greedy_token():
    assert logprob_request() == {"logprobs": True, "top_logprobs": 20, "max_tokens": 1, "temperature": 0}
    assert TOP_LOGPROBS == 20


def test_a_token_with_leading_whitespace_counts_for_its_option():
    probabilities = option_probabilities_from_top(top((" 2", 0.3), ("1", 0.1)), ["1", "2"], model=SPEC)
    assert probabilities == pytest.approx({"1": 0.25, "2": 0.75})


def test_an_option_followed_only_by_punctuation_counts_and_its_tokens_add_up():
    tokens = top(("1", 0.2), ("1.", 0.1), ("1)", 0.1), ("\n1", 0.1), ("2", 0.5))
    assert option_probabilities_from_top(tokens, ["1", "2"], model=SPEC) == pytest.approx(
        {"1": 0.5, "2": 0.5}
    )


def test_a_token_that_runs_on_into_another_number_or_word_does_not_count():
    tokens = top(("10", 0.6), ("1st", 0.1), ("1", 0.1), ("2", 0.1))
    assert option_probabilities_from_top(tokens, ["1", "2"], model=SPEC) == pytest.approx(
        {"1": 0.5, "2": 0.5}
    )
    assert not starts_with_option("Yesterday", "Yes")
    assert starts_with_option(" Yes,", "Yes")
    assert not starts_with_option("yes", "Yes")  # exact, case included


def test_options_absent_from_the_top_tokens_get_probability_zero():
    tokens = top(("It", 0.7), ("3", 0.2))
    assert option_logprobs_from_top(tokens, ["1", "3"]) == {"1": -math.inf, "3": pytest.approx(math.log(0.2))}
    assert option_probabilities_from_top(tokens, ["1", "3"], model=SPEC) == {"1": 0.0, "3": 1.0}


def test_probabilities_sum_to_one_over_the_options_in_their_order():
    tokens = top(("I", 0.3), ("4", 0.25), ("2", 0.2), (" 3", 0.1), ("10", 0.05), ("1", 0.05))
    probabilities = option_probabilities_from_top(tokens, FOUR, model=SPEC)
    assert list(probabilities) == FOUR
    assert math.fsum(probabilities.values()) == pytest.approx(1.0)
    assert probabilities["4"] == pytest.approx(0.25 / 0.6)


def test_top_tokens_starting_with_no_option_are_refused_in_one_line_naming_the_model_and_tokens():
    with pytest.raises(NoOptionAmongTopTokens) as caught:
        option_probabilities_from_top(top(("It", 0.6), (" I", 0.2), ("10", 0.1)), ["1", "2"], model=SPEC)
    message = str(caught.value)
    assert "\n" not in message
    assert SPEC in message and "'It' (0.60)" in message and "'10'" in message
    assert isinstance(caught.value, OptionScoringError)


def test_an_answer_without_logprobs_is_a_fatal_error_naming_the_model():
    for logprobs in (None, {"content": None}, {"content": [{"token": "1", "logprob": 0.0}]}):
        with pytest.raises(ServerGaveNoLogprobs, match=f"^{SPEC}: the server gave no (top_)?logprobs"):
            first_token_top_logprobs(logprobs, model=SPEC)
    assert issubclass(ServerGaveNoLogprobs, FatalModelError)


def test_a_malformed_top_entry_is_an_unusable_answer_not_a_crash():
    with pytest.raises(UnusableTopLogprobs, match="entry 1 is"):
        first_token_top_logprobs(
            {
                "content": [
                    {"token": "1", "logprob": 0.0, "top_logprobs": [{"token": "1", "logprob": -0.1}, {}]}
                ]
            },
            model=SPEC,
        )
    with pytest.raises(UnusableTopLogprobs, match="no tokens"):
        first_token_top_logprobs({"content": []}, model=SPEC)


# --- ResilientChatModel, without a server ---------------------------------------------------------------


class ScoringChat(BaseChatModel):
    """A chat that scores options itself, as the local backends do (a fixed distribution)."""

    _asked: list[list[str]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scoring"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="1"))])

    async def option_probabilities(self, messages, options):
        self._asked.append(list(options))
        return normalised({option: -float(index) for index, option in enumerate(options)})


def local_model(chat: BaseChatModel, ledger: CallLedger | None = None) -> ResilientChatModel:
    services = ModelServices(ledger=ledger)
    return ResilientChatModel(
        "local:scoring.gguf",
        chat,
        gate=services.gate,
        policy=services.policy,
        meter=services.meter,
        structured_args=_local_structured,
        ledger=ledger,
    )


async def test_a_chat_that_scores_options_itself_is_asked_through_the_meter_and_the_ledger(tmp_path):
    chat = ScoringChat()
    ledger = CallLedger(tmp_path / "ledger.sqlite")
    model = local_model(chat, ledger)
    assert model.gives_option_probabilities
    first = await model.option_probabilities(FAMILY, ["1", "2"])
    again = await local_model(chat, ledger).option_probabilities(FAMILY, ["1", "2"])
    assert first == pytest.approx({"1": 1 / (1 + math.exp(-1)), "2": math.exp(-1) / (1 + math.exp(-1))})
    assert again == first
    assert chat._asked == [["1", "2"]]  # the second model replayed the ledger
    assert model.meter.step("survey").calls == 1


async def test_a_model_that_cannot_give_option_probabilities_says_so_before_any_call():
    model = scripted_model(lambda messages, kwargs: "1")
    assert not model.gives_option_probabilities
    with pytest.raises(OptionScoringError, match="scripted:test cannot give option probabilities"):
        await model.option_probabilities(FAMILY, FOUR)
    assert model.chat.calls == []


# --- against the mock server --------------------------------------------------------------------------


@pytest.fixture
def openai_env(no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    return no_provider_env


def api_model(
    server: MockOpenAIServer, ledger: CallLedger | None = None, **limits: Any
) -> ResilientChatModel:
    limits = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, **limits}
    services = ModelServices(limits=CallLimits(**limits), base_url=server.base_url, ledger=ledger)
    return create_chat_model(SPEC, services=services)


@pytest.mark.integration
async def test_the_server_s_top_tokens_become_probabilities_over_the_options(openai_env):
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        model = api_model(server)
        try:
            assert model.gives_option_probabilities
            probabilities = await model.option_probabilities(FAMILY, FOUR)
        finally:
            await model.aclose()
        (request,) = server.requests()
    assert request.body["logprobs"] is True and request.body["top_logprobs"] == 20
    assert list(probabilities) == FOUR
    assert math.fsum(probabilities.values()) == pytest.approx(1.0)
    # The mock lists "10" beside option 1 (not an option here); it must not count for 1.
    table = dict(
        survey_top_logprobs(
            FAMILY[-1]["content"], "mock-model", survey_answer(FAMILY[-1]["content"], "mock-model", None)
        )
    )
    assert "10" in table
    by_option = {
        o: math.log(sum(math.exp(lp) for t, lp in table.items() if t.strip(" .") == o)) for o in FOUR
    }
    assert probabilities == pytest.approx(normalised(by_option))


@pytest.mark.integration
async def test_a_second_run_with_the_same_ledger_asks_the_server_nothing(openai_env, tmp_path):
    path = tmp_path / "ledger.sqlite"
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        first_model = api_model(server, CallLedger(path))
        first = [await first_model.option_probabilities(q, FOUR) for q in (FAMILY, WORK)]
        await first_model.aclose()
        first_model.ledger.close()
        asked = len(server.log)
        replaying = api_model(server, CallLedger(path))
        again = [await replaying.option_probabilities(q, FOUR) for q in (FAMILY, WORK)]
        await replaying.aclose()
        assert len(server.log) == asked == 2
    assert again == first
    assert replaying.meter.step("survey").replayed == 2


@pytest.mark.integration
async def test_rate_limits_and_server_errors_are_retried_until_every_question_is_answered(openai_env):
    config = ServerConfig(
        api_key=FAKE_KEY, fault_rate=0.5, fault_kinds=("429", "500", "503"), retry_after_s=0.01
    )
    questions = [
        question(f"How important is topic {n} in your life?", ("Very", "Rather", "Not very", "Not at all"))
        for n in range(6)
    ]
    with MockOpenAIServer(config) as server:
        model = api_model(server, max_attempts=10)
        answers = [await model.option_probabilities(q, FOUR) for q in questions]
        await model.aclose()
        faults = [r for r in server.requests(status=None) if r.fault]
    assert faults, "the server injected no fault; the test proves nothing"
    assert {r.fault for r in faults} & {"429", "500", "503"}
    assert all(math.fsum(a.values()) == pytest.approx(1.0) for a in answers)
    usage = model.meter.step("survey")
    assert usage.retries == len(faults) and usage.calls == len(questions) and usage.failures == 0


@pytest.mark.integration
async def test_a_server_that_ignores_the_logprobs_flag_stops_the_run_in_one_line(openai_env):
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, logprobs=False)) as server:
        model = api_model(server)
        with pytest.raises(ServerGaveNoLogprobs) as caught:
            await model.option_probabilities(FAMILY, FOUR)
        await model.aclose()
        requests = server.requests()
    assert str(caught.value).startswith(f"{SPEC}: the server gave no logprobs")
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, FatalModelError)
    assert len(requests) == 1  # asking again would not help


@pytest.mark.integration
async def test_top_tokens_naming_no_option_are_asked_again_then_fail_as_unusable(openai_env):
    # A question without numbered options: the mock's top tokens are words only.
    bare = [{"role": "user", "content": "Say something.\nAnswer with the number of one option only."}]
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        model = api_model(server)
        with pytest.raises(ModelCallFailed) as caught:
            await model.option_probabilities(bare, ["1", "2"])
        await model.aclose()
        requests = server.requests()
    assert isinstance(caught.value.__cause__, MalformedResponse)
    assert "'It'" in str(caught.value)
    assert len(requests) == CallLimits().max_malformed_attempts


@pytest.mark.integration
async def test_bad_options_are_refused_before_any_request(openai_env):
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        model = api_model(server)
        with pytest.raises(OptionScoringError, match="option '1' is given twice"):
            await model.option_probabilities(FAMILY, ["1", "1"])
        await model.aclose()
        assert server.log == []


class Listener(AsyncCallbackHandler):
    pass


@pytest.mark.integration
async def test_both_langchain_paths_put_the_logprobs_into_the_answer_s_metadata(openai_env):
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        chat = api_model(server).chat
        lean = await chat.ainvoke(FAMILY, **logprob_request())
        # With a listener, LeanChatOpenAI hands over to LangChain's own path.
        listened = await chat.ainvoke(FAMILY, config={"callbacks": [Listener()]}, **logprob_request())
        await chat.aclose()
    for answer in (lean, listened):
        assert first_token_top_logprobs(answer.response_metadata["logprobs"], model=SPEC)
