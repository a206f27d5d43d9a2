"""How likely a local model's whole answer is each option of a closed question (a survey's codes).

An option's score is log P(its tokens, then an end-of-answer token | the prompt with the assistant's
generation prefix): the same tokens greedy decoding would produce and then stop at. Counting the end
token is what keeps "1" from collecting the probability of "10" (which starts with the same token).
The scores are then normalised over the options with a softmax.

The local backends (`HFChat`, `LocalLlamaChat`) compute the scores; this module holds what they share:
checking the request, the normalisation, and the protocol callers test a chat model against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable


class OptionScoringError(ValueError):
    """A request for option probabilities that cannot be answered; the message names what is wrong."""


@runtime_checkable
class ScoresOptions(Protocol):
    """A chat model that can say how likely each option is as its whole answer."""

    async def option_probabilities(
        self, messages: list[dict[str, str]], options: Sequence[str]
    ) -> dict[str, float]: ...


def checked_options(options: Sequence[str]) -> list[str]:
    """The options as a list, refused in one line when one is empty, not a string or given twice."""
    if isinstance(options, str):
        raise OptionScoringError(
            f"options {options!r}: expected a sequence of option strings, got one string"
        )
    listed = list(options)
    if not listed:
        raise OptionScoringError("options: none given; expected at least one option string")
    seen: set[str] = set()
    for index, option in enumerate(listed):
        if not isinstance(option, str) or not option:
            raise OptionScoringError(f"option {index} is {option!r}; expected a non-empty string")
        if option in seen:
            raise OptionScoringError(f"option {option!r} is given twice")
        seen.add(option)
    return listed


def checked_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The conversation to answer (plain role/content dicts), refused in one line when malformed."""
    if not messages:
        raise OptionScoringError("messages: none given; expected the system and user messages to answer")
    plain = []
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise OptionScoringError(
                f"message {index} is {message!r}; expected {{'role': system|user|assistant, 'content': str}}"
            )
        plain.append({"role": role, "content": content})
    if plain[-1]["role"] == "assistant":
        raise OptionScoringError(
            "the last message is the assistant's; options score the reply that follows it"
        )
    return plain


def normalised(option_logprobs: Mapping[str, float]) -> dict[str, float]:
    """Probabilities of the options from their log-probabilities (a softmax, in the options' order).

    The largest log-probability is subtracted before exponentiating, so options far below zero still
    share their mass instead of all underflowing; an option at -inf gets probability 0.
    """
    if not option_logprobs:
        raise OptionScoringError("no option log-probabilities to normalise")
    for option, logprob in option_logprobs.items():
        if math.isnan(logprob) or logprob == math.inf:
            raise OptionScoringError(
                f"option {option!r} has log-probability {logprob!r}; expected a number < +inf"
            )
    top = max(option_logprobs.values())
    if top == -math.inf:
        raise OptionScoringError("every option has log-probability -inf: the model can end on none of them")
    weights = {option: math.exp(logprob - top) for option, logprob in option_logprobs.items()}
    total = math.fsum(weights.values())
    return {option: weight / total for option, weight in weights.items()}
