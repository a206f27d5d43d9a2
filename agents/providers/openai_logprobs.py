"""Option probabilities of OpenAI-compatible chat models, read from the first answer token's
`top_logprobs`.

An API model gives no probability of a whole answer, only the log-probabilities of the likeliest
tokens at each position. So an option's probability here is P(the answer STARTS WITH the option as a
whole number or word), the meaning the local backends use: every top token whose text, after its
leading whitespace, is the option, or the option followed only by punctuation ("1", " 1", "1.",
"1)"), gives its probability to that option; a token that runs on into another number or word ("10",
"1st" for option "1") gives it nothing. The options' shares are then normalised over the options.

What one token cannot tell:
- `top_logprobs` caps at 20 tokens, so an option outside the twenty likeliest first tokens gets
  probability 0, and the normalisation spreads only the mass the listed options hold (an answer
  that mostly starts "It ..." still yields a distribution over the options it lists next).
- An option longer than one token (a word the tokenizer splits) is never a whole first token and
  so is never counted. Survey codes (1 to 2 digits) are single tokens in the OpenAI tokenizers.
- Matching is exact and case-sensitive after the leading whitespace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from agents.providers.option_scoring import OptionScoringError, checked_options, normalised
from agents.providers.resilience import FatalModelError

# The most alternatives the OpenAI API lists per position.
TOP_LOGPROBS = 20
# How many top tokens an error message quotes.
_QUOTED_TOKENS = 5

TopLogprobs = list[dict[str, Any]]


def logprob_request() -> dict[str, Any]:
    """The chat-completions arguments of an option-probability call: the first answer token with its
    twenty likeliest alternatives, decoded greedily (one token is all that is read)."""
    return {"logprobs": True, "top_logprobs": TOP_LOGPROBS, "max_tokens": 1, "temperature": 0}


class ServerGaveNoLogprobs(OptionScoringError, FatalModelError):
    """The server answered without the log-probabilities it was asked for.

    A server that ignores the flag ignores it on every call, so asking again cannot help: it stops
    the run (a `FatalModelError`) instead of failing each question after its retries.
    """


class UnusableTopLogprobs(OptionScoringError):
    """The top log-probabilities came back, but option probabilities cannot be read from them."""


class NoOptionAmongTopTokens(UnusableTopLogprobs):
    """None of the first answer token's top alternatives starts the answer with an option."""


def first_token_top_logprobs(logprobs: Mapping[str, Any] | None, *, model: str) -> TopLogprobs:
    """The first answer token's alternatives ([{token, logprob}, ...]) from a choice's `logprobs`
    object (`choices[0].logprobs` of a chat completion), checked and stripped of their bytes."""
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else None
    if not isinstance(content, list):
        raise ServerGaveNoLogprobs(
            f"{model}: the server gave no logprobs (asked with logprobs=true); it cannot give option "
            "probabilities, sample its answers instead"
        )
    if not content:
        raise UnusableTopLogprobs(f"{model}: the answer has no tokens, so no first-token logprobs")
    first = content[0]
    top = first.get("top_logprobs") if isinstance(first, Mapping) else None
    if not isinstance(top, list) or not top:
        raise ServerGaveNoLogprobs(
            f"{model}: the server gave no top_logprobs for the first answer token (asked for "
            f"{TOP_LOGPROBS}); it cannot give option probabilities, sample its answers instead"
        )
    return [{"token": token, "logprob": logprob} for token, logprob in _checked_entries(top, model)]


def _checked_entries(top: Sequence[Any], model: str) -> list[tuple[str, float]]:
    entries = []
    for index, entry in enumerate(top):
        token = entry.get("token") if isinstance(entry, Mapping) else None
        logprob = entry.get("logprob") if isinstance(entry, Mapping) else None
        number = isinstance(logprob, (int, float)) and not isinstance(logprob, bool)
        if not isinstance(token, str) or not number or math.isnan(logprob) or logprob > 0:
            raise UnusableTopLogprobs(
                f"{model}: top_logprobs entry {index} is {entry!r}; expected "
                "{'token': str, 'logprob': number <= 0}"
            )
        entries.append((token, float(logprob)))
    return entries


def starts_with_option(token: str, option: str) -> bool:
    """Whether an answer beginning with `token` begins with `option` as a whole number or word."""
    text = token.lstrip()
    if not text.startswith(option):
        return False
    return not any(character.isalnum() for character in text[len(option) :])


def option_logprobs_from_top(top: Sequence[Mapping[str, Any]], options: Sequence[str]) -> dict[str, float]:
    """log P(the answer starts with the option) per option as far as the top tokens show it
    (the log of the summed probabilities of its tokens); -inf for an option none of them starts."""
    listed = checked_options(options)
    entries = _checked_entries(top, "top_logprobs")
    scores: dict[str, float] = {}
    for option in listed:
        matching = [logprob for token, logprob in entries if starts_with_option(token, option)]
        scores[option] = _log_sum_exp(matching)
    return scores


def option_probabilities_from_top(
    top: Sequence[Mapping[str, Any]], options: Sequence[str], *, model: str
) -> dict[str, float]:
    """P(the answer starts with the option) per option, normalised over the options (see the module's
    docstring for what a 20-token list cannot show). Raises NoOptionAmongTopTokens, naming the model
    and the likeliest tokens, when no option starts any of them."""
    scores = option_logprobs_from_top(top, options)
    if all(score == -math.inf for score in scores.values()):
        likeliest = sorted(top, key=lambda entry: entry["logprob"], reverse=True)[:_QUOTED_TOKENS]
        shown = ", ".join(f"{entry['token']!r} ({math.exp(entry['logprob']):.2f})" for entry in likeliest)
        raise NoOptionAmongTopTokens(
            f"{model}: no option of {list(scores)[:10]} starts any of the first answer token's "
            f"{len(top)} likeliest tokens; the top ones: {shown}"
        )
    return normalised(scores)


def _log_sum_exp(logprobs: Sequence[float]) -> float:
    if not logprobs:
        return -math.inf
    top = max(logprobs)
    return top + math.log(math.fsum(math.exp(logprob - top) for logprob in logprobs))


def top_logprobs_text(top: TopLogprobs) -> str:
    """The top tokens as the text a ledger entry keeps (compact JSON)."""
    return json.dumps(top, ensure_ascii=False, separators=(",", ":"))


def top_logprobs_of_text(text: str) -> TopLogprobs:
    """The top tokens back from a ledger entry's text."""
    return json.loads(text)
