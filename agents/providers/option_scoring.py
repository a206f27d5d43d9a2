"""How likely a local model's answer to a closed question (a survey's codes) starts with each option.

What is scored. An option's score is the log-probability that the answer, read from the assistant's
generation prefix, STARTS WITH the option as a whole word or number:

    P(option's tokens | prompt) x P(next token is a boundary | prompt + option's tokens)

A boundary is an end-of-answer token or any token whose text does not start with a letter or digit.
So "1" followed by ".", " ", ")" or "\\n" counts for option "1", and "1" followed by "0" (the answer
"10") does not. The scores are then normalised over the options with a softmax (`normalised`).

Why. The embedded SmolLM2 hardly ever answers a survey question with a bare code: greedily it writes
"1. Strongly agree" (every WVS seed question, in every culture tried). The previous definition,
P(option's tokens, then an end token), described those rare bare answers, not what the model says: on
10 Arabic WVS questions the codes, so scored, covered ~2 % of the model's answers and their argmax was
the greedy answer's code on none of them; scored as answer starts they cover ~36 % and the argmax is
the greedy answer's code on all 10, on both backends. Ending the answer is one kind of boundary, so the
new definition contains the old one; requiring a boundary (not just the option's tokens) is what still
keeps "1" from collecting the probability of "10", which starts with the same token.

Tokens that carry the option and its boundary at once. Some tokenizers have tokens such as "1." or
" agree,": a model that writes one of them starts its answer with the option, but through a token that
is not the option's own last token. So the mass of every token whose text is the option's last
token's text, then a character that is not a letter or digit (then anything), is added at that
position (`merged_with`).
SmolLM2's tokenizer has no such token: its pre-tokenizer splits every digit and every run of
punctuation into tokens of their own ("1." is "1", "."; "10" is "1", "0"; the vocabulary holds no
token of digits followed by punctuation), so for it this term is zero; it is kept so that `hf:` models
with other tokenizers are scored by the same definition.

Where the text of a token is not whole characters (a byte-level token holding part of a multi-byte
character, decoded as U+FFFD) it is counted as continuing the word: it may be the start of a letter,
and a boundary is only counted where one can be seen.

The local backends (`HFChat`, `LocalLlamaChat`) compute the scores; this module holds what they
share: checking the request, which tokens are boundaries, how the pieces combine, the normalisation,
and the protocol callers test a chat model against.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

# What a decoder writes for bytes that are not a whole UTF-8 character (part of a multi-byte letter).
UNFINISHED_CHARACTER = "\ufffd"


class OptionScoringError(ValueError):
    """A request for option probabilities that cannot be answered; the message names what is wrong."""


@runtime_checkable
class ScoresOptions(Protocol):
    """A chat model that can say how likely its answer is to start with each option."""

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
        raise OptionScoringError(
            "every option has log-probability -inf: the answer can start with none of them"
        )
    weights = {option: math.exp(logprob - top) for option, logprob in option_logprobs.items()}
    total = math.fsum(weights.values())
    return {option: weight / total for option, weight in weights.items()}


def continues_a_word(text: str) -> bool:
    """Whether a token with this text, written right after an option, makes the option part of a
    longer word or number: its text starts with a letter or digit (or with an unfinished character,
    which may be the start of a letter). Every other token, empty text included, is a boundary."""
    return bool(text) and (text[0].isalnum() or text[0] == UNFINISHED_CHARACTER)


@dataclass(frozen=True)
class AnswerBoundaries:
    """Which tokens of one model's vocabulary end an option at the start of its answer (built once
    per loaded model: the backends turn `is_boundary` into a mask over their logits)."""

    pieces: tuple[str, ...]  # each token's text, by id
    is_boundary: np.ndarray  # bool per id of the model's logits: an end token or a non-word start
    merged: Mapping[str, tuple[int, ...]]  # a text -> tokens that are that text, then a boundary character

    def merged_with(self, token: int) -> tuple[int, ...]:
        """Tokens that write this token's text and a boundary at once ("1" -> "1.", "1)" where such
        tokens exist): in place of an option's last token, they too start the answer with the option."""
        return self.merged.get(self.pieces[token], ()) if 0 <= token < len(self.pieces) else ()


def answer_boundaries(
    pieces: Sequence[str], end_tokens: Iterable[int], vocab_size: int | None = None
) -> AnswerBoundaries:
    """The boundaries of a vocabulary from each token's text (by id) and the end-of-answer tokens.

    `vocab_size` is the width of the model's logits when it differs from the tokenizer's length:
    ids without a text are never boundaries (the tokenizer cannot produce them).
    """
    size = len(pieces) if vocab_size is None else vocab_size
    ends = {token for token in end_tokens if 0 <= token < size}
    is_boundary = np.zeros(size, dtype=bool)
    merged: dict[str, list[int]] = {}
    for token, text in enumerate(pieces[:size]):
        is_boundary[token] = token in ends or not continues_a_word(text)
        if token in ends:
            continue
        for cut in range(1, len(text)):
            if not continues_a_word(text[cut]):
                merged.setdefault(text[:cut], []).append(token)
    is_boundary[sorted(ends)] = True
    return AnswerBoundaries(
        tuple(pieces), is_boundary, {text: tuple(tokens) for text, tokens in merged.items()}
    )


def answer_start_logprob(option_steps: Sequence[float], boundary: float, merged: float) -> float:
    """log P(the answer starts with the option as a whole word or number).

    `option_steps`: log P of each of the option's tokens after the prompt and the tokens before it;
    `boundary`: log P(the next token is a boundary) after all of them; `merged`: log of the summed
    probability, at the option's last token, of the tokens that write that token and a boundary at
    once (-inf where there are none). The two ways to start the answer with the option are added.
    """
    if not option_steps:
        raise OptionScoringError("an option with no tokens cannot be scored")
    through_own_tokens = math.fsum(option_steps) + boundary
    through_merged_token = math.fsum(option_steps[:-1]) + merged
    top = max(through_own_tokens, through_merged_token)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.exp(through_own_tokens - top) + math.exp(through_merged_token - top))


class ScoresAnswerStarts:
    """The option-probability methods both local backends share; a backend supplies
    `_option_logprobs(messages, options)`, run on the local-compute thread."""

    def _option_logprobs(self, messages: list[dict[str, str]], options: list[str]) -> dict[str, float]:
        raise NotImplementedError

    async def option_probabilities(
        self, messages: list[dict[str, str]], options: Sequence[str]
    ) -> dict[str, float]:
        """P(the answer starts with the option as a whole word or number) for each option, normalised
        over the options: "1. Strongly agree" and "1" both count for "1", "10" does not.

        The raw model's probabilities: no repeat penalty or other sampling setting applies. Bad
        messages or options raise OptionScoringError in one line.
        """
        return normalised(await self.answer_start_logprobs(messages, options))

    async def answer_start_logprobs(
        self, messages: list[dict[str, str]], options: Sequence[str]
    ) -> dict[str, float]:
        """log P(the answer starts with the option as a whole word or number) for each option, not
        normalised: where no option starts another, their exponentials add up to the share of the
        model's answers that start with one of the options."""
        from agents.providers.local_compute import run_local

        plain, listed = checked_messages(messages), checked_options(options)
        return await run_local(self._option_logprobs, plain, listed)
