"""A chat model wrapped in the resilience layer: the only way nodes talk to an LLM."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_messages
from pydantic import BaseModel, ValidationError

from agents.providers.openai_logprobs import (
    UnusableTopLogprobs,
    first_token_top_logprobs,
    logprob_request,
    option_probabilities_from_top,
    top_logprobs_of_text,
    top_logprobs_text,
)
from agents.providers.option_scoring import (
    OptionScoringError,
    ScoresOptions,
    checked_messages,
    checked_options,
)
from agents.providers.resilience import (
    Completion,
    MalformedResponse,
    RateGate,
    RetryPolicy,
    UsageMeter,
    call_resiliently,
    within,
)
from storage.ledger import CallLedger, LedgerEntry, call_key

Message = dict[str, str]


@dataclass(frozen=True, eq=False)
class AnswerSchema:
    """What a structured call asks for: the JSON schema a provider constrains its answer to (and its
    name), and the pydantic model that validates the answer.

    They may differ: the synonym step narrows `word` to one sentence's own words for the provider
    while validating against the general table model. Building that narrowed schema as a pydantic
    model per sentence cost more CPU than the rest of a call, so it is plain JSON schema.
    """

    name: str
    json_schema: dict[str, Any]
    model: type[BaseModel]


@cache
def answer_schema(model: type[BaseModel]) -> AnswerSchema:
    """The schema of a pydantic model as is (computed once per model)."""
    return AnswerSchema(name=model.__name__, json_schema=model.model_json_schema(), model=model)


# Provider-specific request arguments that make the model answer JSON of a given schema; the attempt
# index lets a provider escalate (the local model answers free-form first, under a grammar on retries).
StructuredArgs = Callable[[AnswerSchema, int], dict[str, Any]]
# Turns the raw answer into what the caller wants; raises ValueError when the answer is unusable.
Parser = Callable[[str], Any]


def message_text(message: BaseMessage) -> str:
    if isinstance(message, (AIMessage, AIMessageChunk)):
        return message.text
    return str(message.content)


def estimate_tokens_of(messages: list[BaseMessage], max_tokens: int) -> int:
    # About four characters a token for English; only used to meter --tpm before the answer is known.
    return sum(len(m.text) for m in messages) // 4 + max_tokens


class ResilientChatModel:
    """Rate-limited, retried, metered access to one chat model."""

    def __init__(
        self,
        spec: str,
        chat: BaseChatModel,
        *,
        gate: RateGate,
        policy: RetryPolicy,
        meter: UsageMeter,
        structured_args: StructuredArgs,
        seeded: bool = False,
        default_max_tokens: int = 512,
        parallelism: int | None = None,
        ledger: CallLedger | None = None,
    ) -> None:
        self.spec = spec
        self.chat = chat
        self.gate = gate
        self.policy = policy
        self.meter = meter
        self._structured_args = structured_args
        self._seeded = seeded
        self._default_max_tokens = default_max_tokens
        # How many calls the model itself can serve at once (None: as many as the gate allows).
        self.parallelism = parallelism
        self.ledger = ledger

    async def aclose(self) -> None:
        """Close the HTTP client under the model, if it has one of its own (call in the run's loop)."""
        await close_http_client(self.chat)

    async def _ask(
        self,
        lc_messages: list[BaseMessage],
        args: dict[str, Any],
        limit: int,
        usage,
        text_of: Callable[[BaseMessage], str] = message_text,
    ) -> LedgerEntry:
        """One request to the provider, inside a concurrency / rate slot; `text_of` picks what of the
        answer the ledger keeps (the text, or the first token's top log-probabilities)."""
        async with self.gate.slot(estimate_tokens_of(lc_messages, limit)):
            started = time.perf_counter()  # time in the model, not in the queue for a slot
            answer = await within(self.chat.ainvoke(lc_messages, **args), self.gate.limits.timeout_s)
        usage.seconds += time.perf_counter() - started
        meta = getattr(answer, "usage_metadata", None) or {}
        input_tokens = int(meta.get("input_tokens", 0) or 0)
        output_tokens = int(meta.get("output_tokens", 0) or 0)
        usage.input_tokens += input_tokens
        usage.output_tokens += output_tokens
        return LedgerEntry(text=text_of(answer), input_tokens=input_tokens, output_tokens=output_tokens)

    async def _score_locally(self, messages: list[Message], options: list[str], usage) -> LedgerEntry:
        """A local chat's own option probabilities, inside a slot (it competes with generation for
        the same compute), kept as JSON text."""
        async with self.gate.slot(estimate_tokens_of(convert_to_messages(messages), len(options))):
            started = time.perf_counter()
            scores = await within(
                self.chat.option_probabilities(messages, options),  # type: ignore[attr-defined]
                self.gate.limits.timeout_s,
            )
        usage.seconds += time.perf_counter() - started
        return LedgerEntry(text=json.dumps(scores), input_tokens=0, output_tokens=0)

    @property
    def gives_option_probabilities(self) -> bool:
        """Whether `option_probabilities` can answer: OpenAI-compatible models (from their first
        token's top log-probabilities) and chats that score options themselves (the local ones)."""
        return isinstance(self.chat, ScoresOptions) or self.spec.startswith("openai:")

    async def option_probabilities(
        self, messages: list[Message], options: Sequence[str], *, step: str = "survey"
    ) -> dict[str, float]:
        """How likely the model's answer is each option, normalised over the options: one logical
        call through the gate, the retries, the usage meter and the ledger, like `generate`.

        A local chat computes it itself (agents/providers/option_scoring.py); an `openai:` model
        reads its first answer token's top log-probabilities (agents/providers/openai_logprobs.py).
        Bad messages or options raise OptionScoringError in one line, before any call. A server
        that gives no logprobs raises ServerGaveNoLogprobs, a FatalModelError: it would not give
        them on a retry either. Top tokens none of which starts with an option are an unusable
        answer, asked again at once like an unparsable text (a bounded number of times), then
        ModelCallFailed with the MalformedResponse as its cause.
        """
        plain, listed = checked_messages(messages), checked_options(options)
        if not self.gives_option_probabilities:
            raise OptionScoringError(
                f"{self.spec} cannot give option probabilities (only openai: and local models can); "
                "sample its answers instead"
            )
        local = isinstance(self.chat, ScoresOptions)
        usage = self.meter.step(step)
        request = logprob_request()
        # The OpenAI answer (the top tokens) does not depend on the options, so they are not part
        # of its key; a local answer does.
        params = {"option_probabilities": listed} if local else request
        lc_messages = convert_to_messages(plain)

        def top_logprobs_of(answer: BaseMessage) -> str:
            logprobs = answer.response_metadata.get("logprobs")
            return top_logprobs_text(first_token_top_logprobs(logprobs, model=self.spec))

        async def attempt(index: int) -> dict[str, float]:
            usage.attempts += 1
            key = call_key(self.spec, plain, params, index) if self.ledger is not None else ""
            entry = self.ledger.get(key) if self.ledger is not None else None
            if entry is None:
                try:
                    if local:
                        entry = await self._score_locally(plain, listed, usage)
                    else:
                        entry = await self._ask(
                            lc_messages, request, request["max_tokens"], usage, top_logprobs_of
                        )
                except UnusableTopLogprobs as exc:
                    raise MalformedResponse(str(exc)) from None
                if self.ledger is not None:
                    self.ledger.put(key, spec=self.spec, step=step, entry=entry)
            else:
                usage.replayed += 1
            if local:
                return {option: float(p) for option, p in json.loads(entry.text).items()}
            try:
                return option_probabilities_from_top(
                    top_logprobs_of_text(entry.text), listed, model=self.spec
                )
            except UnusableTopLogprobs as exc:
                raise MalformedResponse(str(exc)) from None

        return await call_resiliently(
            attempt, policy=self.policy, gate=self.gate, usage=usage, label=f"{self.spec} ({step})"
        )

    async def generate(
        self,
        messages: list[Message],
        *,
        step: str,
        schema: AnswerSchema | type[BaseModel] | None = None,
        parse: Parser | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        sample_seed: int = 0,
    ) -> Completion:
        """One logical call: retried on transient failures, parsed into `schema` when one is given.

        `parse` turns the raw answer into the schema, or cleans a plain-text answer (lenient parsers
        live beside their prompts);
        an answer that is empty or cannot be parsed is asked again at once, without the backoff that
        server failures get (a bounded number of times: `CallLimits.max_malformed_attempts`).
        """
        usage = self.meter.step(step)
        limit = max_tokens or self._default_max_tokens
        request: dict[str, Any] = {"max_tokens": limit}
        if temperature is not None:
            request["temperature"] = temperature
        lc_messages = convert_to_messages(messages)
        answer = schema if isinstance(schema, AnswerSchema) or schema is None else answer_schema(schema)

        async def attempt(index: int) -> Completion:
            usage.attempts += 1
            args = dict(request)
            if answer is not None:
                args.update(self._structured_args(answer, index))
            sampled = bool(temperature) and temperature > 0
            if self._seeded or (sampled and self.spec.startswith("openai:")):
                # Local sampling is deterministic per seed: vary it so a retry is a new draw.
                # OpenAI-compatible servers take a seed too (best effort), which makes the K draws
                # of `--samples K` distinct requests, reproducibly.
                args["seed"] = sample_seed * 1000 + index
            keyed = args if "seed" in args or not sampled else {**args, "draw": sample_seed}
            # A sampled draw is its own call: without the draw in the key, the ledger would hand
            # draws 2..K the answer of draw 1.
            key = call_key(self.spec, messages, keyed, index) if self.ledger is not None else ""
            entry = self.ledger.get(key) if self.ledger is not None else None
            if entry is None:
                entry = await self._ask(lc_messages, args, limit, usage)
                if self.ledger is not None:
                    self.ledger.put(key, spec=self.spec, step=step, entry=entry)
            else:
                usage.replayed += 1
            text = entry.text
            if not text.strip():
                raise MalformedResponse(f"{self.spec} returned an empty answer")
            parsed = None
            if answer is not None or parse is not None:
                # A plain-text answer may have a parser too (a dialogue line cleaned of its speaker's name).
                expected = answer.name if answer is not None else "the expected text"
                try:
                    parsed = (parse or answer.model.model_validate_json)(text)  # type: ignore[union-attr]
                except (ValueError, ValidationError) as exc:
                    raise MalformedResponse(f"{self.spec} answer does not fit {expected}: {exc}") from exc
            return Completion(
                text=text,
                parsed=parsed,
                input_tokens=entry.input_tokens,
                output_tokens=entry.output_tokens,
                attempts=index + 1,
            )

        return await call_resiliently(
            attempt, policy=self.policy, gate=self.gate, usage=usage, label=f"{self.spec} ({step})"
        )


async def close_http_client(model: object) -> None:
    """Close the connections a LangChain model holds: its own `aclose` (the lean OpenAI classes) and
    the httpx client it was given (`http_async_client`), if any."""
    close = getattr(model, "aclose", None)
    if close is not None:
        await close()
    client = getattr(model, "http_async_client", None)
    if client is not None and hasattr(client, "aclose"):
        await client.aclose()
