"""Scripted stand-ins for unit tests of logic. Real models and servers are used by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from agents.judge import Verdict
from agents.providers.chat import ResilientChatModel
from agents.providers.factory import ModelServices, _openai_structured
from agents.providers.resilience import CallLimits

Responder = Callable[[list[BaseMessage], dict[str, Any]], str | BaseException]


class ScriptedChat(BaseChatModel):
    """Answers each call with what `responder(messages, kwargs)` returns (or raises it)."""

    responder: Any
    _calls: list[tuple[list[BaseMessage], dict[str, Any]]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def calls(self) -> list[tuple[list[BaseMessage], dict[str, Any]]]:
        return self._calls

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self._calls.append((messages, kwargs))
        answer = self.responder(messages, kwargs)
        if isinstance(answer, BaseException):
            raise answer
        message = AIMessage(
            content=answer, usage_metadata={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def scripted_model(
    responder: Responder, *, limits: CallLimits | None = None, spec: str = "scripted:test"
) -> ResilientChatModel:
    services = ModelServices(
        limits=limits or CallLimits(max_attempts=3, backoff_initial_s=0.0, backoff_max_s=0.0)
    )
    return ResilientChatModel(
        spec,
        ScriptedChat(responder=responder),
        gate=services.gate,
        policy=services.policy,
        meter=services.meter,
        structured_args=_openai_structured,
    )


class RuleJudge:
    """Scores candidates by a rule: texts containing a banned word score 0.5, the rest 0.9."""

    def __init__(self, banned: Sequence[str] = (), threshold: float = 0.8) -> None:
        self.spec = "rule"
        self.banned = [b.lower() for b in banned]
        self.threshold = threshold
        self.seen: list[str] = []

    async def aclose(self) -> None:
        return None

    async def judge(self, seed: str, candidates: Sequence[str]) -> list[Verdict]:
        self.seen.extend(candidates)
        scores = [0.5 if any(b in c.lower() for b in self.banned) else 0.9 for c in candidates]
        return [Verdict(score=s, accepted=s >= self.threshold) for s in scores]


def last_user_text(messages: list[BaseMessage]) -> str:
    return messages[-1].text
