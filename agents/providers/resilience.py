"""The resilience layer every model call goes through: concurrency and rate limits, timeouts,
retries with exponential backoff and jitter that honour Retry-After, usage accounting.

Retries happen at named layers. This module is the transport layer: it retries 429, 5xx, timeouts
and connection errors after a backoff, asks again at once when an answer is malformed or empty, and
fails at once on authentication and invalid-request errors. Asking again because the judge rejected
an answer (the semantic layer) is the graph's business, not this module's.
"""

from __future__ import annotations

import asyncio
import email.utils
import heapq
import itertools
import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from aiolimiter import AsyncLimiter
from tenacity import RetryCallState

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """Await with a deadline (raising TimeoutError). On Python 3.11+ the awaitable runs in the
    caller's task; `asyncio.wait_for` there wraps every call in a task of its own."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


class MalformedResponse(RuntimeError):
    """The server answered, but with nothing usable (empty text, unparsable structured output)."""


class FatalModelError(RuntimeError):
    """A failure that retrying cannot fix: bad key, unknown model, invalid request. Stops the run."""


class ModelCallFailed(RuntimeError):
    """A transient failure that outlasted the retry budget. Fails the current seed, not the run."""


@dataclass(frozen=True)
class CallLimits:
    """How hard the run may push the providers; shared by every model of a run."""

    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    max_attempts: int = 6
    # At most this many answers of one call may be unusable (the last one ends the call): a model
    # that produced garbage twice rarely recovers, and every attempt costs tokens. They count
    # towards max_attempts too.
    max_malformed_attempts: int = 3
    timeout_s: float = 120.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0


# Which waiting call gets the next free slot: lower first, then first come first served. Graph nodes
# set it (a context variable reaches every call the node makes, however deeply nested), so a seed's
# last steps can go ahead of other seeds' first ones; see graphs/augment.py.
CALL_PRIORITY: ContextVar[int] = ContextVar("call_priority", default=0)


# Whose call it is, when one gate serves several jobs (`serve`: one gate per provider and key for the
# whole server). Free slots go round the tenants that are waiting, so a small job's calls are not
# queued behind everything a large job asked for first; within a tenant, CALL_PRIORITY then arrival.
CALL_TENANT: ContextVar[str] = ContextVar("call_tenant", default="")


@contextmanager
def _set_within(variable: ContextVar[T], value: T) -> Iterator[None]:
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def call_tenant(tenant: str) -> AbstractContextManager[None]:
    """Calls made inside the block (and in tasks started from it) share the gate as `tenant`."""
    return _set_within(CALL_TENANT, tenant)


def call_priority(priority: int) -> AbstractContextManager[None]:
    """Calls made inside the block wait for slots with this priority (lower goes first)."""
    return _set_within(CALL_PRIORITY, priority)


class RateGate:
    """Bounds in-flight calls across the whole run, meters requests and tokens, and backs off when
    the provider says 429.

    Requests are paced by a small bucket refilled 2% under --rpm: at most `burst` requests leave at
    once, then they are spaced evenly. The bucket is as large as it can be while no 10-second window
    ever sees more than its share of the per-minute limit (burst + 10 s x rate <= rpm / 6); a bucket
    of a whole minute's quota would let it all out at once, and a bucket of one made every burst of
    calls (the run's start, a seed's parallel synonym calls) queue at the limiter.

    On a 429 the allowed concurrency halves and new calls wait out the server's Retry-After; each
    run of successes as long as the current limit raises it by one again (additive increase,
    multiplicative decrease). Calls waiting for a slot are served fairly across tenants
    (`CALL_TENANT`: the tenant that has been granted the fewest slots goes first), then by
    `CALL_PRIORITY`, then in arrival order. A run of the command line is one tenant.
    """

    def __init__(self, limits: CallLimits, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self.burst = 0
        self._requests: AsyncLimiter | None = None
        if limits.rpm:
            # 2% under the limit absorbs scheduling jitter between our clock and the server's.
            per_second = limits.rpm / 60.0 / 1.02
            self.burst = max(1, int(10.0 * (limits.rpm / 60.0 - per_second)))
            window = limits.rpm / 6.0  # what any 10 seconds may see
            if window >= 20:
                # One request of headroom per 10 s as well: requests leave exactly paced but reach the
                # server a few milliseconds apart more or less, and a window measured there could
                # otherwise catch one more than its share. (Below 120 rpm it would cost over 5%.)
                per_second = min(per_second, (window - 1 - self.burst) / 10.0)
            self._requests = AsyncLimiter(self.burst, self.burst / per_second)
        self._tokens = AsyncLimiter(limits.tpm / 60.0, 1.0) if limits.tpm else None
        self.allowed = limits.concurrency
        self.lowest_allowed = limits.concurrency
        self.throttle_events = 0
        self.requests = 0
        self._in_flight = 0
        self._successes = 0
        self._paused_until = 0.0
        # Per tenant, (priority, arrival, future) of the calls waiting for a slot; a granted slot is
        # counted in _in_flight before its waiter wakes, so nobody can take it in between.
        self._waiting: dict[str, list[tuple[int, int, asyncio.Future[None]]]] = {}
        # Slots granted per tenant since it last had to wait: the fair-share clock.
        self._granted: dict[str, int] = {}
        self._arrivals = itertools.count()

    def _next_tenant(self) -> str:
        """The waiting tenant with the fewest slots granted (ties: whose first waiter came first)."""
        return min(self._waiting, key=lambda t: (self._granted.get(t, 0), self._waiting[t][0][1]))

    def _grant(self) -> None:
        while self._waiting and self._in_flight < self.allowed:
            tenant = self._next_tenant()
            queue = self._waiting[tenant]
            _, _, waiter = heapq.heappop(queue)
            if not queue:
                del self._waiting[tenant]
            if waiter.done():  # cancelled while waiting
                continue
            self._granted[tenant] = self._granted.get(tenant, 0) + 1
            self._in_flight += 1
            waiter.set_result(None)

    def _join_queue(self, tenant: str) -> None:
        """A tenant that starts waiting is put level with the least-served tenant already waiting:
        a job that arrives late gets its fair share from now on (not the backlog of slots the others
        were granted before it came), and one that was idle does not pay for what it had before."""
        if tenant not in self._waiting:
            self._granted[tenant] = min((self._granted[t] for t in self._waiting), default=0)

    async def _enter(self) -> None:
        if self._in_flight < self.allowed and not self._waiting:
            self._in_flight += 1
            return
        tenant = CALL_TENANT.get()
        self._join_queue(tenant)
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._waiting.setdefault(tenant, []), (CALL_PRIORITY.get(), next(self._arrivals), waiter)
        )
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled: hand it on
                self._leave()
            raise

    def _leave(self) -> None:
        self._in_flight -= 1
        self._grant()

    @asynccontextmanager
    async def slot(self, estimated_tokens: int):
        await self._enter()
        try:
            pause = self._paused_until - self._clock()
            if pause > 0:
                await asyncio.sleep(pause)
            if self._requests is not None:
                await self._requests.acquire()
            if self._tokens is not None:
                # A request larger than the whole bucket could never be admitted: charge the bucket size.
                await self._tokens.acquire(min(float(estimated_tokens), self._tokens.max_rate))
            self.requests += 1
            yield
        finally:
            self._leave()

    def rate_limited(self, retry_after: float | None) -> None:
        self.throttle_events += 1
        self.allowed = max(1, self.allowed // 2)
        self.lowest_allowed = min(self.lowest_allowed, self.allowed)
        self._successes = 0
        if retry_after:
            self._paused_until = max(
                self._paused_until, self._clock() + min(retry_after, self.limits.backoff_max_s)
            )

    def succeeded(self) -> None:
        if self.allowed >= self.limits.concurrency:
            return
        self._successes += 1
        if self._successes >= self.allowed:
            self._successes = 0
            self.allowed += 1
            self._grant()

    def report(self, seconds: float) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "effective_rpm": round(self.requests / seconds * 60.0, 1) if seconds > 0 else 0.0,
            "rpm_limit": self.limits.rpm or 0,
            "concurrency_limit": self.limits.concurrency,
            "lowest_concurrency_after_429": self.lowest_allowed,
            "throttle_events": self.throttle_events,
        }


class GateRegistry:
    """One gate per provider and key, shared by every run of a process (the `serve` command's jobs).

    Two jobs calling OpenAI with the same key then share one concurrency limit, one request bucket
    and one token bucket, and a 429 slows them both: the server as a whole keeps to the configured
    limits, which per-run gates could not promise. Providers without configured limits get the
    defaults of `CallLimits`.
    """

    def __init__(self, limits_by_provider: dict[str, CallLimits] | None = None) -> None:
        self.limits_by_provider = dict(limits_by_provider or {})
        self._gates: dict[tuple[str, str], RateGate] = {}

    def gate(self, provider: str, identity: str) -> RateGate:
        """The gate of `provider` for one endpoint and key (`identity` must not hold the key itself)."""
        key = (provider, identity)
        if key not in self._gates:
            self._gates[key] = RateGate(self.limits_by_provider.get(provider, CallLimits()))
        return self._gates[key]

    def gates(self) -> dict[str, RateGate]:
        """Every gate made so far, by "provider endpoint" (for status pages; no keys in it)."""
        return {f"{provider} {identity.split('|')[0]}": g for (provider, identity), g in self._gates.items()}


@dataclass
class StepUsage:
    calls: int = 0  # successful calls
    replayed: int = 0  # of those, answered from the run's ledger without asking the provider
    attempts: int = 0
    retries: int = 0
    failures: int = 0  # calls that gave up (transient budget spent, or fatal)
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


@dataclass
class UsageMeter:
    """Per-step counters, reported in the manifest and the progress bar."""

    steps: dict[str, StepUsage] = field(default_factory=lambda: defaultdict(StepUsage))

    def step(self, name: str) -> StepUsage:
        return self.steps[name]

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.steps.values())

    @property
    def errors(self) -> int:
        return sum(s.retries + s.failures for s in self.steps.values())

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {
            name: {**vars(usage), "seconds": round(usage.seconds, 3)}
            for name, usage in sorted(self.steps.items())
        }


def _status_code(exc: BaseException) -> int | None:
    for attribute in ("status_code", "code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


_TRANSIENT_STATUS = {408, 409, 425, 429}


def is_transient_error(exc: BaseException) -> bool:
    """Whether asking again later may succeed."""
    if isinstance(exc, (MalformedResponse, asyncio.TimeoutError, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, json.JSONDecodeError):  # a truncated or garbled response body
        return True
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
        return True
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a hard dependency
        openai = None
    if openai is not None and isinstance(
        exc, (openai.APITimeoutError, openai.APIConnectionError, openai.APIResponseValidationError)
    ):
        return True
    status = _status_code(exc)
    if status is not None:
        # An error raised on a 2xx answer means the body itself was unusable.
        return status in _TRANSIENT_STATUS or status >= 500 or status < 300
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient_error(cause)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's own wait hint (Retry-After, retry-after-ms), if the error carries one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed is None:
            return None
        return max(parsed.timestamp() - time.time(), 0.0)


def describe_error(exc: BaseException) -> str:
    status = _status_code(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"


class RetryPolicy:
    """Asks again until an answer is usable or a budget is spent.

    A transient failure (429, 5xx, timeout, lost connection) waits first: exponential backoff with
    full jitter, raised to the server's Retry-After when it gives one. An unusable answer
    (`MalformedResponse`) is asked again at once: the server answered, so waiting would only leave
    a slot idle while the seed that needs the answer stalls.
    """

    def __init__(self, limits: CallLimits, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.limits = limits
        self._sleep = sleep

    def backoff_seconds(self, failures: int, exc: BaseException | None = None) -> float:
        """The wait after a call's `failures`-th transient failure (`exc`, whose Retry-After counts)."""
        ceiling = min(self.limits.backoff_max_s, self.limits.backoff_initial_s * 2 ** (failures - 1))
        wait = random.uniform(0, ceiling)
        hinted = retry_after_seconds(exc) if exc else None
        if hinted is not None:
            wait = max(wait, min(hinted, self.limits.backoff_max_s * 5))
        return wait

    def wait_seconds(self, state: RetryCallState) -> float:
        """The backoff as a tenacity `wait` (for callers whose every failure is transient)."""
        exc = state.outcome.exception() if state.outcome else None
        return self.backoff_seconds(state.attempt_number, exc)

    async def run(
        self,
        attempt: Callable[[int], Awaitable[T]],
        *,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Call `attempt(attempt_index)` until it succeeds, a fatal error occurs, `max_attempts`
        attempts are spent, or `max_malformed_attempts` answers were unusable; the last error is
        raised. `on_retry` hears of each failure that is asked again."""
        failures = unusable = 0
        for index in itertools.count():
            try:
                return await attempt(index)
            except Exception as exc:
                if not is_transient_error(exc):
                    raise
                malformed = isinstance(exc, MalformedResponse)
                # Counted apart, so unusable answers before a 5xx do not lengthen its backoff.
                if malformed:
                    unusable += 1
                else:
                    failures += 1
                if index + 1 >= self.limits.max_attempts or unusable >= self.limits.max_malformed_attempts:
                    raise
                if on_retry is not None:
                    on_retry(exc)
                if not malformed:
                    await self._sleep(self.backoff_seconds(failures, exc))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def is_provider_error(exc: BaseException) -> bool:
    """An error the provider sent us (a 4xx, a refused key), as opposed to a bug in our code."""
    if getattr(exc, "status_code", None) is not None or getattr(exc, "response", None) is not None:
        return True
    return type(exc).__module__.split(".")[0] in {"openai", "google", "httpx", "langchain_google_genai"}


async def call_resiliently(
    attempt: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    gate: RateGate,
    usage: StepUsage,
    label: str,
) -> T:
    """One logical provider call through the transport layer; chat models and API embedders share it.

    `attempt(index)` makes one request (inside a gate slot). Failures are retried by `policy`; a 429
    halves the gate's concurrency and pauses it for the server's Retry-After; a success lets the gate
    recover. A spent budget of transient failures becomes `ModelCallFailed` (the item fails, the run
    goes on), a provider's refusal (bad key, invalid request) `FatalModelError` (the run stops), and
    anything else, a bug of ours, is raised as it is.
    """
    attempts = 0

    async def counted(index: int) -> T:
        nonlocal attempts
        attempts = index + 1
        return await attempt(index)

    def on_retry(exc: BaseException) -> None:
        usage.retries += 1
        if _status_code(exc) == 429:
            gate.rate_limited(retry_after_seconds(exc))

    try:
        result = await policy.run(counted, on_retry=on_retry)
    except Exception as exc:
        usage.failures += 1
        if is_transient_error(exc):
            raise ModelCallFailed(
                f"{label}: gave up after {attempts} attempts: {describe_error(exc)}"
            ) from exc
        if is_provider_error(exc):
            raise FatalModelError(f"{label}: {describe_error(exc)}") from exc
        raise
    usage.calls += 1
    gate.succeeded()
    return result


@dataclass(frozen=True)
class Completion:
    text: str
    parsed: Any = None  # what the call's parser made of the text (a schema instance by default)
    input_tokens: int = 0
    output_tokens: int = 0
    attempts: int = 1
