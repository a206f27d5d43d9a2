"""`--translate LANG`: rendering, parsing and retrying with scripted models; never a real model call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import builders.command
from agents.providers.resilience import Completion, FatalModelError, ModelCallFailed
from builders import render_wvs_prompt
from builders.translate import (
    STEP,
    TranslationRejected,
    parse_translation,
    translate_prompts,
    translation_messages,
)
from cli import main
from tests.fakes import last_user_text, scripted_model

AGREE4 = "1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree"
PROMPT = render_wvs_prompt("Work is a duty towards society", AGREE4)


def source_of(user_message: str) -> str:
    return user_message.split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]


def german(prompt: str) -> str:
    """A stand-in 'translation' that keeps the layout and option numbers, as the template asks."""
    return (
        prompt.replace("Statement:", "Aussage:")
        .replace("Question:", "Frage:")
        .replace("Answer with", "Antworte mit")
    )


class ScriptedTranslator:
    """Answers translation calls with `answer(source_prompt, attempt)`; raises what it returns if an exception."""

    def __init__(self, answer: Callable[[str, int], str | BaseException]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str, int]] = []

    async def generate(self, messages, *, step, schema=None, sample_seed=0):
        source = source_of(messages[-1]["content"])
        self.calls.append((step, source, sample_seed))
        answer = self.answer(source, sample_seed)
        if isinstance(answer, BaseException):
            raise answer
        return Completion(text=answer)


def test_the_translation_prompt_names_the_language_and_quotes_the_prompt():
    messages = translation_messages(PROMPT, "German")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "into German" in messages[0]["content"]
    assert source_of(messages[1]["content"]) == PROMPT


def test_a_translation_keeping_the_option_numbers_is_accepted():
    assert parse_translation(german(PROMPT), PROMPT) == german(PROMPT)


@pytest.mark.parametrize(
    "wrapped",
    [
        "```\n{t}\n```",
        "```text\n{t}\n```",
        "<<<\n{t}\n>>>",
        "\n\n  {t}  \n",
    ],
)
def test_fences_markers_and_whitespace_around_a_translation_are_removed(wrapped):
    assert parse_translation(wrapped.format(t=german(PROMPT)), PROMPT) == german(PROMPT)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty translation"),
        ("   \n ", "empty translation"),
        ("```\n\n```", "empty translation"),
        ("2", "option numbers 1, 2, 3, 4 are missing"),
        ("Ich kann das nicht übersetzen.", "option numbers 1, 2, 3, 4 are missing"),
        (german(PROMPT).split("3.")[0], "option numbers 3, 4 are missing"),  # truncated
        (german(PROMPT) + " bla" * 1000, "characters for a"),
    ],
)
def test_unusable_answers_are_rejected_with_a_reason(raw, problem):
    with pytest.raises(TranslationRejected, match=problem):
        parse_translation(raw, PROMPT)


async def test_a_rejected_answer_is_asked_again_with_a_new_draw():
    model = ScriptedTranslator(lambda source, attempt: "Entschuldigung" if attempt == 0 else german(source))
    result = await translate_prompts([PROMPT], "German", model)
    assert result.texts == {PROMPT: german(PROMPT)}
    assert [(step, seed) for step, _, seed in model.calls] == [(STEP, 0), (STEP, 1)]


async def test_each_distinct_prompt_is_translated_once():
    model = ScriptedTranslator(lambda source, attempt: german(source))
    other = render_wvs_prompt("Work should always come first", AGREE4)
    result = await translate_prompts([PROMPT, other, PROMPT, other, PROMPT], "German", model)
    assert len(model.calls) == 2
    assert result.texts == {PROMPT: german(PROMPT), other: german(other)}


async def test_a_prompt_that_never_gets_a_translation_is_reported_not_fatal():
    other = render_wvs_prompt("Work should always come first", AGREE4)
    model = ScriptedTranslator(lambda source, attempt: "nope" if source == PROMPT else german(source))
    result = await translate_prompts([PROMPT, other], "German", model, attempts=2)
    assert result.texts == {other: german(other)}
    assert result.failures == {
        PROMPT: "option numbers 1, 2, 3, 4 are missing from the translation (after 2 attempts)"
    }


async def test_transport_failures_past_the_retry_budget_are_reported_and_fatal_errors_propagate():
    exhausted = ScriptedTranslator(lambda source, attempt: ModelCallFailed("gave up after 6 attempts: 503"))
    assert (await translate_prompts([PROMPT], "German", exhausted)).failures == {
        PROMPT: "gave up after 6 attempts: 503"
    }
    broken = ScriptedTranslator(lambda source, attempt: FatalModelError("401 invalid api key"))
    with pytest.raises(FatalModelError):
        await translate_prompts([PROMPT], "German", broken)


def test_the_real_resilient_model_wrapper_fits_the_translator():
    # Through the project's own rate-limited, retried model class, with a scripted chat underneath.
    model = scripted_model(lambda messages, kwargs: german(source_of(last_user_text(messages))))
    result = asyncio.run(translate_prompts([PROMPT], "German", model))
    assert result.texts == {PROMPT: german(PROMPT)}
    assert model.meter.step(STEP).calls == 1


def build(*argv: str | Path) -> int:
    return main(["build-dataset", *map(str, argv)])


@pytest.fixture
def translate_with(monkeypatch):
    """Have cli.py's build-dataset resolve --translate-model specs with a scripted factory."""

    def use(factory) -> None:
        monkeypatch.setattr(builders.command, "default_model_factory", lambda base_url: factory)

    return use


def test_build_with_translate_replaces_only_the_user_prompts(tmp_path, capsys, translate_with):
    specs: list[str] = []

    def factory(spec: str) -> ScriptedTranslator:
        specs.append(spec)
        # Q27 never comes back as a usable translation: its example is dropped, the build goes on.
        return ScriptedTranslator(
            lambda source, attempt: "?" if "parents proud" in source else german(source)
        )

    out = tmp_path / "de"
    argv = ["--culture", "German", "--translate", "German", "--translate-model", "openai:gpt-4o-mini"]
    translate_with(factory)
    assert build(*argv, "--out", out) == 0
    assert specs == ["openai:gpt-4o-mini"]
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 49
    first = rows[0]["messages"]
    assert first[0]["content"] == "You are a German chatbot that knows German culture very well."
    assert first[1]["content"].startswith("Aussage: When a mother works for pay")
    assert first[2]["content"] in {"1", "2", "3", "4"}
    err = capsys.readouterr().err
    assert "dropped 1 examples whose 1 prompts could not be translated" in err
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "translated into German by `openai:gpt-4o-mini`" in card
    assert "--translate German --translate-model openai:gpt-4o-mini" in card


def test_a_fatal_model_error_is_one_line_and_leaves_nothing(tmp_path, capsys, translate_with):
    def factory(spec: str) -> ScriptedTranslator:
        return ScriptedTranslator(
            lambda source, attempt: FatalModelError("openai:x (translate): 401 bad key")
        )

    argv = [
        "--culture",
        "Greek",
        "--translate",
        "Greek",
        "--translate-model",
        "openai:x",
        "--out",
        tmp_path / "o",
    ]
    translate_with(factory)
    assert build(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --translate-model openai:x: openai:x (translate): 401 bad key"]
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_spec_is_refused_by_the_projects_model_factory(tmp_path, capsys):
    argv = [
        "--culture",
        "Greek",
        "--translate",
        "Greek",
        "--translate-model",
        "nonsense",
        "--out",
        tmp_path / "o",
    ]
    assert build(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --translate-model: unknown model spec 'nonsense'")
    assert list(tmp_path.iterdir()) == []


def test_default_seed_and_answer_paths_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert build("--culture", "Bengali", "--out", Path("bn")) == 0
    assert (tmp_path / "bn" / "train.jsonl").is_file()
