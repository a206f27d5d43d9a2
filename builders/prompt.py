"""The fine-tuning prompt of a WVS item: one template shared by dataset building, training and evaluation."""

from __future__ import annotations

import re

from builders.scales import OptionScale, parse_option_scale
from prompts import Message, template

WVS_PROMPT = "wvs_question_v1"

# Seeds and paraphrases state their item after a lead-in ("How frequently do the following things occur
# in your neighborhood: Robberies"), so a question is recognised by its opening or by its lead-in.
# "When"/"Whenever" are left out on purpose: "When jobs are scarce, men should ..." is a statement.
_QUESTION_OPENING = re.compile(
    r"^\W*(how|what|which|who|whom|whose|why|where|do|does|did|is|are|was|were|would|should|could|can|"
    r"will|have|has|to what extent|in your (?:view|opinion))\b",
    re.IGNORECASE,
)
_QUESTION_LEAD_IN = re.compile(r"\b(how|what|which|do you|would you|should you|are you)\b", re.IGNORECASE)


def is_question(text: str) -> bool:
    """Whether a WVS item is asked as a question (else it is a statement to agree or disagree with)."""
    stripped = text.strip()
    if stripped.endswith("?") or _QUESTION_OPENING.search(stripped):
        return True
    lead_in, colon, _ = stripped.partition(":")
    return bool(colon) and bool(_QUESTION_LEAD_IN.search(lead_in))


def _variables(text: str, scale: OptionScale) -> dict[str, object]:
    return {
        "kind": "question" if is_question(text) else "statement",
        "text": " ".join(text.split()),
        "options": scale.options,
        "anchored": scale.anchored,
        "low": scale.low,
        "high": scale.high,
    }


def wvs_messages(culture: str, text: str, scale: OptionScale) -> list[Message]:
    """System and user messages of one training example (the assistant answers with the label)."""
    return template(WVS_PROMPT).render(culture=culture, **_variables(text, scale))


def render_wvs_prompt(text: str, option: str) -> str:
    """The user prompt for a statement or question and its seed `option` string, exactly as trained.

    Raises `builders.scales.ScaleError` when `option` is not an option scale.
    """
    messages = template(WVS_PROMPT).render(**_variables(text, parse_option_scale(option)))
    return messages[-1]["content"]


def culture_system_prompt(culture: str) -> str:
    """The system message of a culture, exactly as the fine-tuning examples carry it: evaluation
    addresses a model the way training addressed it. Rendered from the training template itself (any
    question will do: the system message does not depend on it), so the two can never drift apart."""
    return template(WVS_PROMPT).render(
        culture=culture, **_variables("?", parse_option_scale("1. Yes 2. No"))
    )[0]["content"]
