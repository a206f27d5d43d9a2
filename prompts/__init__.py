"""Prompt templates (`*.jinja` beside this file) and the pydantic models of the answers they ask for.

A template is a chat: `### system`, `### user` and `### assistant` headers start the messages, so
few-shot turns live in the template file itself. A prompt is changed by adding a new version
(`paraphrase_v2.jinja`) so that the manifests of older runs still name the prompt they used.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, Field

PROMPTS_DIR = Path(__file__).resolve().parent

Message = dict[str, str]

_ROLE_HEADER = re.compile(r"^### (system|user|assistant)\s*$", re.MULTILINE)

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PROMPTS_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    autoescape=False,
    # Templates ship with the package: no need to stat the file again on every render.
    auto_reload=False,
)


class PromptError(ValueError):
    """A template is missing, unparsable, or rendered without one of its variables."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str

    @property
    def path(self) -> Path:
        return PROMPTS_DIR / f"{self.name}.jinja"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def render(self, **variables: Any) -> list[Message]:
        try:
            text = _environment.get_template(f"{self.name}.jinja").render(**variables)
        except jinja2.TemplateNotFound as exc:
            raise PromptError(f"prompt template {self.path} does not exist") from exc
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt {self.name}: {exc.message}") from exc
        return split_chat(text, source=self.name)


def split_chat(text: str, *, source: str) -> list[Message]:
    """Turn `### role` sections into chat messages, dropping empty leading text."""
    parts = _ROLE_HEADER.split(text)
    if len(parts) < 3:
        raise PromptError(f"prompt {source} has no '### system' / '### user' sections")
    messages: list[Message] = []
    for role, body in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": role, "content": body.strip()})
    if messages[-1]["role"] != "user":
        raise PromptError(f"prompt {source} must end with a user message")
    return messages


@cache
def template(name: str) -> PromptTemplate:
    """The named template, compiled on first use so that a broken file fails before any call."""
    found = PromptTemplate(name)
    if not found.path.exists():
        raise PromptError(f"prompt template {found.path} does not exist")
    try:
        _environment.get_template(f"{name}.jinja")
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"prompt template {found.path} line {exc.lineno}: {exc.message}") from exc
    return found


PARAPHRASE = "paraphrase_v1"
SYNONYMS = "synonyms_v1"
EQUIVALENCE = "equivalence_v1"
# The templates an augment run may render (and names in its manifest).
AUGMENT_PROMPTS = (PARAPHRASE, SYNONYMS, EQUIVALENCE)


class WordSynonyms(BaseModel):
    """One content word of a sentence and the words that may replace it."""

    word: str = Field(description="The word exactly as it appears in the sentence.", max_length=40)
    synonyms: list[str] = Field(
        default_factory=list, description="Replacements with the same meaning in context.", max_length=5
    )


class SynonymTable(BaseModel):
    """Answer of the synonym substitutor: every content word of one sentence with its synonyms."""

    words: list[WordSynonyms] = Field(default_factory=list, max_length=16)


Relation = Literal["entail", "contradict", "unrelated"]


class EquivalenceVerdict(BaseModel):
    index: int = Field(description="1-based number of the candidate in the prompt.")
    verdict: Relation = Field(description="entail: same claim; contradict: different claim; unrelated.")


class EquivalenceVerdicts(BaseModel):
    """Answer of the LLM judge: one verdict per numbered candidate."""

    verdicts: list[EquivalenceVerdict] = Field(default_factory=list)


CULTUREPARK_TURN = "culturepark_turn_v1"
CULTUREPARK_EXTRACT = "culturepark_extract_v1"
CULTUREPARK_VERIFY = "culturepark_verify_v1"
CULTUREPARK_REWRITE = "culturepark_rewrite_v1"
# The templates a CulturePark run may render (and names in its manifest). The verifier answers
# `EquivalenceVerdicts`, the augment judge's schema, so the two verdict parsers are one.
CULTUREPARK_PROMPTS = (CULTUREPARK_TURN, CULTUREPARK_EXTRACT, CULTUREPARK_VERIFY, CULTUREPARK_REWRITE)


class ExtractedOpinions(BaseModel):
    """Answer of the opinion extractor: what one speaker voiced in one line, as first-person sentences."""

    opinions: list[str] = Field(
        default_factory=list,
        description="Distinct opinions, each a self-contained first-person sentence.",
        max_length=5,
    )


CLASSIFY = "classify_v1"
# The templates an evaluate run may render (and names in its manifest).
EVALUATE_PROMPTS = (CLASSIFY,)
# `evaluate --suite wvs` asks build-dataset's own question prompt; `--suite hofstede` the VSM 2013 items.
WVS_SURVEY_PROMPTS = ("wvs_question_v1",)
HOFSTEDE_PROMPTS = ("vsm_item_v1",)
