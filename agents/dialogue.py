"""CulturePark's dialogue: two personas talk about one WVS item, one line per model call.

Rendering (`render_turn`) and parsing (`parse_utterance`) are separate; the graph in
`graphs/culturepark.py` glues them to the generator. Each call is written from the speaker's side:
their own earlier lines are assistant messages and the other persona's lines are user messages, so
any chat model continues the conversation as the speaker without being told to play two parts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import prompts
from agents.attitude import Attitude, item_text
from builders.prompt import is_question
from storage.records import Seed

Mode = Literal["in", "cross"]
Style = Literal["guided", "free"]

# Two plausible first names per shipped culture (data/cultures.json), ASCII so that a model that drops
# an accent still writes the name the parser looks for. Fixed per culture so that a rerun, a resumed
# run and the stored dialogues all name the same people.
NAMES: dict[str, tuple[str, str]] = {
    "Arabic": ("Layla", "Omar"),
    "Bengali": ("Nusrat", "Rahim"),
    "Chinese": ("Mei", "Wei"),
    "English": ("Emily", "James"),
    "German": ("Anna", "Lukas"),
    "Greek": ("Eleni", "Nikos"),
    "Korean": ("Jiwoo", "Minjun"),
    "Portuguese": ("Ana", "Lucas"),
    "Spanish": ("Camila", "Mateo"),
    "Turkish": ("Elif", "Emre"),
}
FALLBACK_NAMES = ("Alex", "Sam")
# CulturePark's cross-cultural talks pair each culture's delegate with an English-speaking agent.
COUNTERPART_CULTURE = "English"

# The model sees only the latest lines: SmolLM2 runs with a 2048-token context, and a 7+7-line talk
# shown whole would not fit beside the system message and the answer.
WINDOW_LINES = 6
MAX_LINE_CHARS = 600
MAX_CONTEXT_CHARS = 240


@dataclass(frozen=True)
class Persona:
    name: str
    culture: str
    background: str  # a noun phrase: "You are <name>, <background>"
    holds_attitude: bool


class Utterance(NamedTuple):
    speaker: int  # 0 or 1: the index of the persona in the pair
    text: str


def _short_context(context: str) -> str:
    """The first sentence of a culture's description, cut at a word if it is still long."""
    text = " ".join(context.split())
    first = re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0]
    if len(first) <= MAX_CONTEXT_CHARS:
        return first
    return first[:MAX_CONTEXT_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def _member(culture: str, context: str) -> str:
    background = f"a person of {culture} culture who knows it well."
    short = _short_context(context)
    return f"{background} {short}" if short else background


def personas(attitude: Attitude, mode: Mode, context: str = "") -> tuple[Persona, Persona]:
    """The two speakers: in-cultural (both hold the culture's attitude) or cross-cultural (the
    culture's delegate, who holds it, and an English-speaking counterpart with a view of their own)."""
    culture = attitude.culture
    first, second = NAMES.get(culture, FALLBACK_NAMES)
    delegate = Persona(first, culture, _member(culture, context), holds_attitude=True)
    if mode == "in":
        return delegate, Persona(second, culture, _member(culture, context), holds_attitude=True)
    if mode != "cross":
        raise ValueError(f"dialogue mode must be 'in' or 'cross', not {mode!r}")
    name = next(n for n in NAMES[COUNTERPART_CULTURE] if n != first)
    counterpart = Persona(
        name,
        COUNTERPART_CULTURE,
        "a person from an English-speaking culture who has a view of their own on this question.",
        holds_attitude=False,
    )
    return delegate, counterpart


def _shown(text: str) -> str:
    # One line of the transcript as the model sees it: on one line (so it can never be read as a
    # "### role" header of the template) and bounded.
    flat = " ".join(text.split())
    if len(flat) <= MAX_LINE_CHARS:
        return flat
    return flat[:MAX_LINE_CHARS].rsplit(" ", 1)[0] + "..."


def _window(speaker: int, transcript: Sequence[Utterance]) -> list[prompts.Message]:
    """The latest lines as chat messages from `speaker`'s side, consecutive same-side lines joined."""
    lines: list[prompts.Message] = []
    for utterance in transcript[-WINDOW_LINES:]:
        role = "assistant" if utterance.speaker == speaker else "user"
        text = _shown(utterance.text)
        if lines and lines[-1]["role"] == role:
            lines[-1] = {"role": role, "content": f"{lines[-1]['content']} {text}"}
        else:
            lines.append({"role": role, "content": text})
    return lines


def render_turn(
    seed: Seed,
    attitude: Attitude,
    pair: tuple[Persona, Persona],
    speaker: int,
    transcript: Sequence[Utterance],
    *,
    style: Style,
    turn: int,
    turns: int,
) -> list[prompts.Message]:
    """The messages that ask persona `speaker` for their next line.

    `turn` counts the speaker's own lines so far (0 for their first) and `turns` is how many lines
    each speaker says, so the guided style can vary its hint and ask for a summary at the end.
    The list alternates user / assistant after the system message and ends with a user message.
    """
    if speaker not in (0, 1):
        raise ValueError(f"speaker must be 0 or 1, not {speaker!r}")
    me, other = pair[speaker], pair[1 - speaker]
    lines = _window(speaker, transcript)
    return prompts.template(prompts.CULTUREPARK_TURN).render(
        me=me,
        other=other,
        kind="question" if is_question(seed.q_content) else "statement",
        item=item_text(seed),
        culture=attitude.culture,
        answer=attitude.answer,
        lines=lines,
        # A window that starts with the speaker's own line (or no line) begins with a user message:
        # the request to open the conversation, or a note that its start is not shown.
        whole=len(transcript) <= WINDOW_LINES,
        guided=style == "guided",
        turn=turn,
        last=turn >= turns - 1,
    )


_SPECIAL_TOKENS = re.compile(r"<\|[^|<>]*\|>|</?s>")
_STAGE_DIRECTION = re.compile(r"(?<!\*)\*(?!\*)[^*\n]+\*(?!\*)")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_MODERATOR_ECHO = re.compile(r"\(\s*moderator\b[^)]*\)", re.IGNORECASE)
_QUOTES = "\"'“”‘’`«»"
_ROLE_WORDS = ("assistant", "user", "speaker", "moderator")


def _speaker_label(names: Sequence[str]) -> str:
    """'Name:' (also '**Name:**', 'Name (smiling):', 'Speaker 2:') opening a line."""
    alternatives = "|".join(re.escape(n) for n in names)
    return rf"^[\s*_\"'“‘]*(?:{alternatives})(?:\s*\d)?[\s*_]*(?:\([^)\n]*\))?[\s*_]*:[\s*_]*"


def parse_utterance(raw: str, pair: tuple[Persona, Persona], speaker: int | None = None) -> str:
    """The line of persona `speaker` cleaned of what small models add around it.

    A leading label with the speaker's name (either persona's when `speaker` is not given) or a
    role ("Assistant:") is dropped. The answer is cut where a line starts with a name or role label,
    which is the model writing the rest of the script, so an answer that opens with the other
    persona's label is not the speaker's at all. Stage directions (*smiles*) and chat template
    tokens go too. Raises ValueError when nothing of the line remains.
    """
    names = [persona.name for persona in pair]
    own = names if speaker is None else [names[speaker]]
    text = _SPECIAL_TOKENS.sub("", raw or "").strip()
    text = re.sub(_speaker_label([*own, "assistant", "speaker"]), "", text, count=1, flags=re.IGNORECASE)
    later_speaker = re.search(_speaker_label([*names, *_ROLE_WORDS]), text, re.IGNORECASE | re.MULTILINE)
    if later_speaker:
        text = text[: later_speaker.start()]
    text = _STAGE_DIRECTION.sub(" ", text)
    text = _BOLD.sub(r"\1", text)
    text = _MODERATOR_ECHO.sub(" ", text)
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    if not re.search(r"\w", text):
        raise ValueError(f"no line of dialogue in the answer: {raw[:80]!r}")
    return text
