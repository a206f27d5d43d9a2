"""Getting JSON out of model answers that may be fenced, prefixed with chatter, or truncated."""

from __future__ import annotations

import json
import re

from langchain_core.utils.json import parse_partial_json

_FENCE = re.compile(r"```(?:json)?", re.IGNORECASE)


class MalformedOutput(ValueError):
    """A model answer with nothing usable in it; the caller may ask again."""


def load_json_answer(raw: str) -> object:
    text = _FENCE.sub("", raw or "").strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not starts:
        raise MalformedOutput("no JSON object in the answer")
    text = text[min(starts) :]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    # A truncated answer (max_tokens hit mid-list) still carries the entries before the cut.
    partial = parse_partial_json(text)
    if partial is None:
        raise MalformedOutput("unparsable JSON in the answer")
    return partial
