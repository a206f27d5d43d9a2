"""Model and judge spec strings: `local`, `openai:MODEL`, `google:MODEL`; `embed:...`, `llm:...`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Provider = Literal["local", "openai", "google"]
PROVIDERS: tuple[Provider, ...] = ("local", "openai", "google")


class SpecError(ValueError):
    """A spec string, key or endpoint the user gave that cannot work."""


@dataclass(frozen=True)
class ModelSpec:
    provider: Provider
    model: str  # "" for the embedded local default

    def __str__(self) -> str:
        return self.provider if not self.model else f"{self.provider}:{self.model}"


def parse_model_spec(text: str, *, flag: str = "--generator") -> ModelSpec:
    raw = text.strip()
    provider, _, model = raw.partition(":")
    if provider == "local":
        return ModelSpec("local", model.strip())
    if provider in ("openai", "google") and model.strip():
        return ModelSpec(provider, model.strip())  # type: ignore[arg-type]
    raise SpecError(
        f"{flag}: unknown model spec '{text}' (expected local, local:PATH.gguf, openai:MODEL or google:MODEL)"
    )


@dataclass(frozen=True)
class JudgeSpec:
    kind: Literal["embed", "llm"]
    model: ModelSpec

    def __str__(self) -> str:
        return f"{self.kind}:{self.model}"


def parse_judge_spec(text: str, *, flag: str = "--judge") -> JudgeSpec:
    kind, _, rest = text.strip().partition(":")
    if kind in ("embed", "llm") and rest:
        try:
            return JudgeSpec(kind, parse_model_spec(rest, flag=flag))  # type: ignore[arg-type]
        except SpecError:
            pass
    raise SpecError(
        f"{flag}: unknown judge spec '{text}' (expected embed:local, embed:openai:MODEL, "
        "embed:google:MODEL or llm:MODEL-SPEC such as llm:openai:gpt-4o-mini)"
    )
