"""User prompts translated into another language, as in the paper's language variants.

Rendering (`translation_messages`) and parsing (`parse_translation`) are separate so both can be tested
without a model. The model comes in from outside: the command resolves the spec through
`agents.providers.factory`, which already rate-limits and retries transport failures. Here only the semantic layer
lives: an answer that is not a usable translation is asked for again a bounded number of times, and a
prompt that never gets one is reported, not fatal, so one stubborn prompt does not sink a whole build.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.providers.resilience import ModelCallFailed
from prompts import Message, template

TRANSLATE_PROMPT = "translate_v1"
STEP = "translate"
DEFAULT_ATTEMPTS = 3

_OPTION_NUMBER = re.compile(r"^[ \t]*(\d{1,3})\.", re.MULTILINE)
_FENCE = re.compile(r"^```[\w-]*\n(.*)\n```$", re.DOTALL)
# A faithful translation is rarely more than a few times longer than its source; a far longer answer
# is the model answering the survey or chatting, not translating.
_MAX_GROWTH = 4
_LENGTH_SLACK = 200


class ChatModel(Protocol):
    async def generate(self, messages: list[Message], *, step: str, sample_seed: int = 0) -> Any: ...


class TranslationRejected(ValueError):
    """A model answer that is not a usable translation of its prompt."""


@dataclass
class Translations:
    texts: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # prompt -> why it has no translation


def translation_messages(prompt: str, language: str) -> list[Message]:
    return template(TRANSLATE_PROMPT).render(prompt=prompt, language=language)


def option_numbers(text: str) -> list[str]:
    """The "N." option numbers that open lines of a prompt."""
    return _OPTION_NUMBER.findall(text)


def parse_translation(raw: str, source: str) -> str:
    """The translation in a model answer, or `TranslationRejected` saying what is wrong with it."""
    text = raw.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    text = text.removeprefix("<<<").removesuffix(">>>").strip()
    if not text:
        raise TranslationRejected("empty translation")
    lost = [number for number in option_numbers(source) if number not in option_numbers(text)]
    if lost:
        raise TranslationRejected(f"option numbers {', '.join(lost)} are missing from the translation")
    if len(text) > _MAX_GROWTH * len(source) + _LENGTH_SLACK:
        raise TranslationRejected(
            f"translation is {len(text)} characters for a {len(source)}-character prompt"
        )
    return text


async def translate_prompt(
    prompt: str, language: str, model: ChatModel, attempts: int = DEFAULT_ATTEMPTS
) -> str:
    """One prompt translated, asking again (a new draw each time) while the answer is rejected."""
    messages = translation_messages(prompt, language)
    problem = "no attempt made"
    for attempt in range(attempts):
        completion = await model.generate(messages, step=STEP, sample_seed=attempt)
        try:
            return parse_translation(completion.text, prompt)
        except TranslationRejected as exc:
            problem = str(exc)
    raise TranslationRejected(f"{problem} (after {attempts} attempts)")


async def translate_prompts(
    prompts: Iterable[str], language: str, model: ChatModel, attempts: int = DEFAULT_ATTEMPTS
) -> Translations:
    """Each distinct prompt translated once; fatal model errors (bad key, unknown model) propagate."""
    distinct = list(dict.fromkeys(prompts))

    async def one(prompt: str) -> str | Exception:
        try:
            return await translate_prompt(prompt, language, model, attempts)
        except (TranslationRejected, ModelCallFailed) as exc:
            return exc

    results = Translations()
    for prompt, outcome in zip(
        distinct, await asyncio.gather(*(one(prompt) for prompt in distinct)), strict=True
    ):
        if isinstance(outcome, Exception):
            results.failures[prompt] = str(outcome)
        else:
            results.texts[prompt] = outcome
    return results
