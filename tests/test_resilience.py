"""The transport layer: which errors are retried, how long it waits, and how limits are enforced."""

import asyncio
import time

import httpx
import openai
import pytest
from tenacity import RetryCallState

import prompts
from agents.providers.resilience import (
    CallLimits,
    FatalModelError,
    MalformedResponse,
    ModelCallFailed,
    RateGate,
    RetryPolicy,
    call_priority,
    call_tenant,
    is_transient_error,
    retry_after_seconds,
)
from agents.substitutor import parse_synonym_table
from tests.fakes import scripted_model

REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")


def api_error(cls, status, headers=None):
    response = httpx.Response(status, headers=headers or {}, request=REQUEST)
    return cls("boom", response=response, body=None)


@pytest.mark.parametrize(
    "exc",
    [
        api_error(openai.RateLimitError, 429),
        api_error(openai.InternalServerError, 500),
        api_error(openai.InternalServerError, 503),
        openai.APITimeoutError(request=REQUEST),
        openai.APIConnectionError(request=REQUEST),
        MalformedResponse("empty"),
        asyncio.TimeoutError(),
        ConnectionRefusedError(),
    ],
)
def test_transient_errors(exc):
    assert is_transient_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        api_error(openai.AuthenticationError, 401),
        api_error(openai.PermissionDeniedError, 403),
        api_error(openai.BadRequestError, 400),
        api_error(openai.NotFoundError, 404),
        ValueError("a bug"),
    ],
)
def test_fatal_errors(exc):
    assert not is_transient_error(exc)


def test_retry_after_in_seconds_and_milliseconds():
    assert retry_after_seconds(api_error(openai.RateLimitError, 429, {"retry-after": "7"})) == 7.0
    assert retry_after_seconds(api_error(openai.RateLimitError, 429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(api_error(openai.RateLimitError, 429)) is None


def test_the_wait_honours_retry_after_and_stays_bounded():
    policy = RetryPolicy(CallLimits(backoff_initial_s=0.01, backoff_max_s=1.0))

    class Outcome:
        def __init__(self, exc):
            self._exc = exc

        def exception(self):
            return self._exc

    state = RetryCallState(None, None, (), {})
    state.attempt_number = 1
    state.outcome = Outcome(api_error(openai.RateLimitError, 429, {"retry-after": "3"}))
    assert policy.wait_seconds(state) == 3.0
    state.attempt_number = 30
    state.outcome = Outcome(api_error(openai.InternalServerError, 500))
    assert 0.0 <= policy.wait_seconds(state) <= 1.0


async def test_a_bad_key_is_not_retried():
    calls = []

    def responder(messages, kwargs):
        calls.append(1)
        return api_error(openai.AuthenticationError, 401)

    model = scripted_model(responder)
    with pytest.raises(FatalModelError, match="HTTP 401"):
        await model.generate([{"role": "user", "content": "hi"}], step="paraphrase")
    assert len(calls) == 1


async def test_garbage_is_asked_again_a_bounded_number_of_times():
    model = scripted_model(
        lambda m, k: "", limits=CallLimits(max_attempts=6, max_malformed_attempts=2, backoff_initial_s=0)
    )
    with pytest.raises(ModelCallFailed, match="gave up after 2 attempts"):
        await model.generate([{"role": "user", "content": "hi"}], step="paraphrase")
    usage = model.meter.as_dict()["paraphrase"]
    assert (usage["attempts"], usage["retries"], usage["failures"], usage["calls"]) == (2, 1, 1, 0)


class SleepRecorder:
    """Stands in for asyncio.sleep in a RetryPolicy: records each wait instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def scripted_attempts(outcomes):
    """An attempt function for RetryPolicy.run: each attempt raises or returns the next outcome."""
    asked: list[int] = []
    pending = iter(outcomes)

    async def attempt(index: int):
        asked.append(index)
        outcome = next(pending)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt, asked


@pytest.fixture
def widest_jitter(monkeypatch):
    """Full jitter always draws its ceiling, so a test can read the backoff schedule off the waits."""
    monkeypatch.setattr("agents.providers.resilience.random.uniform", lambda low, high: high)


def server_error():
    return api_error(openai.InternalServerError, 503)


async def test_an_unusable_answer_is_asked_again_at_once():
    sleep = SleepRecorder()
    policy = RetryPolicy(CallLimits(max_attempts=6, max_malformed_attempts=3), sleep=sleep)
    attempt, asked = scripted_attempts([MalformedResponse("empty"), MalformedResponse("no words"), "table"])

    assert await policy.run(attempt) == "table"
    assert asked == [0, 1, 2]
    assert sleep.waits == []


async def test_server_errors_back_off_exponentially(widest_jitter):
    sleep = SleepRecorder()
    policy = RetryPolicy(CallLimits(max_attempts=6, backoff_initial_s=1.0, backoff_max_s=60.0), sleep=sleep)
    attempt, asked = scripted_attempts([server_error(), server_error(), server_error(), "fine"])

    assert await policy.run(attempt) == "fine"
    assert sleep.waits == [1.0, 2.0, 4.0]


async def test_unusable_answers_do_not_lengthen_the_backoff_of_server_errors(widest_jitter):
    sleep = SleepRecorder()
    limits = CallLimits(max_attempts=8, max_malformed_attempts=4, backoff_initial_s=1.0)
    policy = RetryPolicy(limits, sleep=sleep)
    outcomes = [MalformedResponse("a"), MalformedResponse("b"), server_error(), MalformedResponse("c")]
    attempt, asked = scripted_attempts([*outcomes, server_error(), "fine"])

    assert await policy.run(attempt) == "fine"
    # The first and second server errors wait 1 s and 2 s, as if the unusable answers were not there.
    assert sleep.waits == [1.0, 2.0]


async def test_a_429_after_unusable_answers_still_waits_out_retry_after():
    sleep = SleepRecorder()
    policy = RetryPolicy(CallLimits(backoff_initial_s=0.01), sleep=sleep)
    throttled = api_error(openai.RateLimitError, 429, {"retry-after": "3"})
    attempt, _ = scripted_attempts([MalformedResponse("a"), throttled, "fine"])

    assert await policy.run(attempt) == "fine"
    assert sleep.waits == [3.0]


async def test_unusable_answers_end_the_call_after_max_malformed_attempts_of_them():
    sleep = SleepRecorder()
    policy = RetryPolicy(CallLimits(max_attempts=10, max_malformed_attempts=3), sleep=sleep)
    # Server errors before them do not use up the budget of unusable answers.
    outcomes = [server_error(), server_error(), *(MalformedResponse(str(i)) for i in range(5))]
    attempt, asked = scripted_attempts(outcomes)

    with pytest.raises(MalformedResponse, match="2"):
        await policy.run(attempt)
    assert len(asked) == 5
    assert len(sleep.waits) == 2


async def test_max_attempts_bounds_a_call_whatever_its_failures():
    policy = RetryPolicy(CallLimits(max_attempts=4, max_malformed_attempts=3), sleep=SleepRecorder())
    attempt, asked = scripted_attempts([server_error(), MalformedResponse("a")] * 3)

    with pytest.raises(MalformedResponse):
        await policy.run(attempt)
    assert asked == [0, 1, 2, 3]


async def test_an_empty_synonym_table_is_asked_again_without_a_wait():
    answers = iter(['{"words": []}', '{"words": [{"word": "jobs", "synonyms": ["posts"]}]}'])
    model = scripted_model(lambda m, k: next(answers), limits=CallLimits(backoff_initial_s=5.0))
    sleep = SleepRecorder()
    model.policy = RetryPolicy(model.policy.limits, sleep=sleep)

    completion = await model.generate(
        [{"role": "user", "content": "Sentence: jobs are scarce"}],
        step="synonyms",
        schema=prompts.SynonymTable,
        parse=parse_synonym_table,
    )
    assert completion.parsed.words[0].synonyms == ["posts"] and completion.attempts == 2
    assert sleep.waits == []
    assert model.meter.as_dict()["synonyms"]["retries"] == 1


async def test_a_flaky_call_succeeds_and_counts_its_retries():
    answers = iter(
        [api_error(openai.InternalServerError, 503), api_error(openai.RateLimitError, 429), "fine"]
    )
    model = scripted_model(lambda m, k: next(answers))
    completion = await model.generate([{"role": "user", "content": "hi"}], step="paraphrase")
    assert completion.text == "fine" and completion.attempts == 3
    assert model.meter.as_dict()["paraphrase"]["retries"] == 2


async def test_the_gate_bounds_calls_in_flight():
    gate = RateGate(CallLimits(concurrency=3))
    in_flight = peak = 0

    async def call():
        nonlocal in_flight, peak
        async with gate.slot(10):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(call() for _ in range(12)))
    assert peak == 3


async def test_the_gate_lets_a_small_burst_go_then_spaces_requests_at_the_rpm_limit():
    gate = RateGate(CallLimits(concurrency=50, rpm=1200))  # 20 a second: a burst of 3, then every 51 ms
    assert gate.burst == 3
    started = time.monotonic()
    entered: list[float] = []

    async def call():
        async with gate.slot(1):
            entered.append(time.monotonic() - started)

    await asyncio.gather(*(call() for _ in range(23)))
    assert max(entered[:3]) < 0.03  # the burst goes at once
    assert entered[-1] >= 1.0  # the other 20 are paced: 20 gaps of ~51 ms


def test_no_10_second_window_can_exceed_the_per_minute_limit():
    for rpm in (1, 60, 500, 3000, 12000, 90000):
        gate = RateGate(CallLimits(rpm=rpm))
        limiter = gate._requests
        assert limiter is not None and gate.burst >= 1
        per_second = limiter.max_rate / limiter.time_period
        # At most a full bucket plus 10 s of refill can pass in any 10 s (requests are whole numbers),
        # and from 120 rpm on one request fewer: headroom for jitter between our clock and the server's.
        headroom = 1 if rpm >= 120 else 0
        assert int(gate.burst + 10 * per_second) <= max(rpm / 6 - headroom, 1), rpm
        assert per_second * 60 >= 0.94 * rpm or rpm < 120, rpm  # the headroom costs little


async def test_waiting_calls_get_free_slots_by_priority_then_in_arrival_order():
    gate = RateGate(CallLimits(concurrency=1))
    release = asyncio.Event()
    served: list[str] = []

    async def holder():
        async with gate.slot(1):
            await release.wait()

    async def call(name: str, priority: int):
        with call_priority(priority):
            async with gate.slot(1):
                served.append(name)

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(call(name, priority))
        for name, priority in [("first stage", 0), ("last stage", -1), ("first stage again", 0)]
    ]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(held, *waiting)
    assert served == ["last stage", "first stage", "first stage again"]


async def test_a_call_cancelled_while_waiting_for_a_slot_takes_none():
    gate = RateGate(CallLimits(concurrency=1))
    release = asyncio.Event()

    async def holder():
        async with gate.slot(1):
            await release.wait()

    async def call():
        async with gate.slot(1):
            pass

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    cancelled.cancel()
    release.set()
    await held
    await asyncio.wait_for(call(), timeout=1.0)  # the freed slot went to nobody else
    assert gate._in_flight == 0 and cancelled.cancelled()


async def test_429_halves_the_allowed_concurrency_and_successes_restore_it():
    gate = RateGate(CallLimits(concurrency=8))
    gate.rate_limited(None)
    gate.rate_limited(None)
    assert gate.allowed == 2 and gate.lowest_allowed == 2 and gate.throttle_events == 2
    for _ in range(2 + 3 + 4 + 5 + 6 + 7):
        gate.succeeded()
    assert gate.allowed == 8


async def test_a_429_with_retry_after_pauses_new_calls():
    gate = RateGate(CallLimits(concurrency=4))
    gate.rate_limited(0.3)
    started = time.monotonic()
    async with gate.slot(1):
        pass
    assert time.monotonic() - started >= 0.25


class ScriptedEmbeddings:
    """A LangChain `Embeddings` stand-in that fails as scripted, then answers."""

    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    async def aembed_documents(self, texts):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return [[1.0, 0.0] for _ in texts]


def api_embedder(embeddings, limits):
    from agents.providers.embedders import ApiEmbedder
    from agents.providers.resilience import RateGate, RetryPolicy, UsageMeter

    async def no_sleep(seconds):
        return None

    gate = RateGate(limits)
    return ApiEmbedder(
        "embed:openai:x",
        embeddings,
        gate=gate,
        policy=RetryPolicy(limits, sleep=no_sleep),
        meter=UsageMeter(),
    ), gate


async def test_api_embeddings_share_the_chat_path_a_429_throttles_the_gate():
    limits = CallLimits(concurrency=8, max_attempts=3)
    rate_limited = api_error(openai.RateLimitError, 429, {"retry-after": "0"})
    embedder, gate = api_embedder(ScriptedEmbeddings([rate_limited]), limits)
    vectors = await embedder.embed(["a", "b"])
    assert vectors.shape == (2, 2)
    assert gate.throttle_events == 1 and gate.allowed == 4  # halved, as for a chat call's 429
    usage = embedder.meter.as_dict()["embed"]
    assert (usage["calls"], usage["retries"], usage["attempts"]) == (1, 1, 2)


async def test_api_embeddings_classify_errors_like_chat_calls():
    limits = CallLimits(max_attempts=2)
    bad_key = api_error(openai.AuthenticationError, 401)
    embedder, _ = api_embedder(ScriptedEmbeddings([bad_key]), limits)
    with pytest.raises(FatalModelError, match="embed:openai:x \\(embed\\): HTTP 401"):
        await embedder.embed(["a"])
    outage = [api_error(openai.InternalServerError, 503), api_error(openai.InternalServerError, 503)]
    embedder, _ = api_embedder(ScriptedEmbeddings(outage), limits)
    with pytest.raises(ModelCallFailed, match="gave up after 2 attempts"):
        await embedder.embed(["a"])
    # a bug of ours is neither retried nor dressed up as the provider's fault
    embedder, _ = api_embedder(ScriptedEmbeddings([KeyError("oops")]), limits)
    with pytest.raises(KeyError):
        await embedder.embed(["a"])


async def test_free_slots_go_round_the_tenants_that_wait_so_a_late_small_job_is_not_queued_behind():
    gate = RateGate(CallLimits(concurrency=1))
    release = asyncio.Event()
    served: list[str] = []

    async def holder():
        async with gate.slot(1):
            await release.wait()

    async def call(tenant: str, name: str):
        with call_tenant(tenant):
            async with gate.slot(1):
                served.append(name)
                await asyncio.sleep(0)

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    big = [asyncio.create_task(call("big", f"big{i}")) for i in range(5)]
    await asyncio.sleep(0.01)
    small = [asyncio.create_task(call("small", f"small{i}")) for i in range(2)]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(held, *big, *small)
    # The small tenant came last but is served every other slot; within a tenant, arrival order.
    assert served == ["big0", "small0", "big1", "small1", "big2", "big3", "big4"]
