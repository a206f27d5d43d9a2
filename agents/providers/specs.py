"""Model and judge spec strings: `local`, `openai:MODEL`, `google:MODEL`, `hf:ID_OR_PATH`; `embed:...`, `llm:...`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Provider = Literal["local", "openai", "google", "hf"]
PROVIDERS: tuple[Provider, ...] = ("local", "openai", "google", "hf")
# What `train` leaves in its output directory; such a directory is a model spec by itself (an hf: model).
TRAIN_SUMMARY = "summary.json"


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
    if provider in ("openai", "google", "hf") and model.strip():
        return ModelSpec(provider, model.strip())  # type: ignore[arg-type]
    if raw and (Path(raw).expanduser() / TRAIN_SUMMARY).is_file():
        # A train output directory names its base model and adapter in its summary (see hf_chat).
        return ModelSpec("hf", raw)
    raise SpecError(
        f"{flag}: unknown model spec '{text}' (expected local, local:PATH.gguf, openai:MODEL, google:MODEL, "
        "hf:ID_OR_PATH or a train output directory)"
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
