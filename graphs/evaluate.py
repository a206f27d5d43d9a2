"""Evaluation of one model on one downstream item, as a (one-step) LangGraph state machine.

    answer -> END

The model is asked as the culture's chatbot (the fine-tuning system prompt) to label the text; the
raw answer is kept and parsed into one of the task's labels, or into nothing (invalid: scored as
wrong, never re-asked: a model that will not answer is what the invalid rate measures). Running it
as a graph on the shared runner gives evaluation the gate, retries, call ledger, resume and manifest
of every other run.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

import prompts
from agents.providers.chat import ResilientChatModel
from agents.providers.resilience import MalformedResponse, ModelCallFailed
from builders.prompt import culture_system_prompt
from evals.data import EvalItem
from evals.parsing import parse_label
from evals.tasks import Task


@dataclass(frozen=True)
class EvalCase:
    """One model's answer to one item (in one of `--samples` repeats)."""

    model: int  # the model's column: its index among the run's --model flags
    item: EvalItem
    sample: int = 0

    @property
    def key(self) -> str:
        return f"{self.model}/{self.item.task}/{self.item.item_id}/{self.sample}"


@dataclass(frozen=True)
class EvalParams:
    """How evaluate's models are asked (downstream tasks and survey suites alike)."""

    temperature: float = 0.0
    max_tokens: int = 16
    sample_seed: int = 0

    def seed_of(self, case_key: str) -> int:
        """A case's own sampling seed: greedy answers repeat anyway; sampled ones differ per case (item,
        question, sample) and repeat across runs."""
        return (zlib.crc32(case_key.encode()) + self.sample_seed) % (2**31)


@dataclass(frozen=True)
class EvalContext:
    models: tuple[ResilientChatModel, ...]
    tasks: dict[str, Task]  # by Task.key
    params: EvalParams = EvalParams()


@dataclass
class EvalState:
    case: EvalCase
    raw: str | None = None
    label: str | None = None
    answered: bool = field(default=False)


def render_classification(task: Task, text: str) -> list[prompts.Message]:
    labels = [(label, task.meanings.get(label, label)) for label in task.labels]
    return prompts.template(prompts.CLASSIFY).render(
        system=culture_system_prompt(task.culture), labels=labels, text=text
    )


async def answer(state: EvalState, runtime: Runtime[EvalContext]) -> dict:
    ctx = runtime.context
    case = state.case
    task = ctx.tasks[case.item.task]
    try:
        completion = await ctx.models[case.model].generate(
            render_classification(task, case.item.text),
            step="classify",
            temperature=ctx.params.temperature,
            max_tokens=ctx.params.max_tokens,
            sample_seed=ctx.params.seed_of(case.key),
        )
    except ModelCallFailed as exc:
        if isinstance(exc.__cause__, MalformedResponse):  # nothing but empty answers: invalid
            return {"raw": "", "label": None, "answered": True}
        raise
    label = parse_label(completion.text, task.labels, task.meanings)
    return {"raw": completion.text, "label": label, "answered": True}


def build_evaluate_graph():
    graph = StateGraph(EvalState, context_schema=EvalContext)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()


evaluate_graph = build_evaluate_graph()
