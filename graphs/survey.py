"""One model's answer to one survey question, as a (one-step) LangGraph state machine.

    answer -> END

The survey suites of `evaluate` (`wvs`: the WVS seed questions; `hofstede`: the VSM 2013 items) ask a
model, as the culture's chatbot, a question whose answer is one option number. A model's answer
distribution is read one of two ways:
- option probabilities, in one case per (model, question): the probability that the answer starts
  with each option, from the model's own token probabilities (`hf:` and `local` models compute them;
  OpenAI-compatible servers give them as the first answer token's `top_logprobs`);
- samples: `--samples K` answers at `--temperature`, one case per sample. An answer that names no
  option is asked again (a new draw, up to `CallLimits.max_malformed_attempts` answers in all) and
  only then recorded as unparsable: counted and reported, never given an off-scale value. A sampled
  respondent who rambles once is a weak model's noise, not its opinion; the retries are in the
  manifest's usage, so a model that mostly rambles still shows.
Running it on the shared runner gives the survey suites the gate, retries, ledger, resume and manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

import prompts
from agents.providers.chat import ResilientChatModel
from agents.providers.resilience import MalformedResponse, ModelCallFailed
from graphs.evaluate import EvalParams

PROBABILITIES = -1  # the sample number of a case answered by option probabilities


@dataclass(frozen=True)
class SurveyQuestion:
    """A question as a model is asked it: the messages, its option codes and how an answer is read."""

    suite: str  # "wvs" or "hofstede"
    culture: str
    question: str  # "Q27", "vsm07"
    messages: tuple[prompts.Message, ...]
    options: tuple[int, ...]
    parse: Callable[[str], int | None]

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.culture}/{self.question}"


@dataclass(frozen=True)
class SurveyCase:
    model: int  # the model's column
    question: str  # SurveyQuestion.key
    sample: int = PROBABILITIES

    @property
    def key(self) -> str:
        return f"{self.model}/{self.question}/{self.sample}"


@dataclass(frozen=True)
class SurveyContext:
    models: tuple[ResilientChatModel, ...]
    questions: dict[str, SurveyQuestion]  # by SurveyQuestion.key
    params: EvalParams = EvalParams()


@dataclass
class SurveyState:
    case: SurveyCase
    raw: str | None = None
    code: int | None = None
    probabilities: dict[int, float] | None = None
    answered: bool = False


async def answer(state: SurveyState, runtime: Runtime[SurveyContext]) -> dict:
    ctx = runtime.context
    case = state.case
    question = ctx.questions[case.question]
    model = ctx.models[case.model]
    if case.sample == PROBABILITIES:
        try:
            by_text = await model.option_probabilities(
                [dict(m) for m in question.messages], [str(code) for code in question.options], step="survey"
            )
        except ModelCallFailed as exc:
            if isinstance(exc.__cause__, MalformedResponse):  # no option among the likely answers, every time
                return {"raw": str(exc.__cause__), "code": None, "probabilities": None, "answered": True}
            raise
        probabilities = {int(code): float(p) for code, p in by_text.items()}
        top = max(sorted(probabilities), key=lambda code: probabilities[code])  # ties: the lowest code
        return {"raw": "", "code": top, "probabilities": probabilities, "answered": True}
    try:
        completion = await model.generate(
            list(question.messages),
            step="survey",
            parse=partial(_named_option, question),
            temperature=ctx.params.temperature,
            max_tokens=ctx.params.max_tokens,
            sample_seed=ctx.params.seed_of(case.key),
        )
    except ModelCallFailed as exc:
        if isinstance(exc.__cause__, MalformedResponse):  # every answer empty or naming no option
            return {"raw": str(exc.__cause__), "code": None, "answered": True}  # the reason quotes it
        raise
    return {"raw": completion.text, "code": completion.parsed, "answered": True}


class NoOptionNamed(ValueError):
    """An answer that names none of the question's options (retried like any unusable answer)."""


def _named_option(question: SurveyQuestion, text: str) -> int:
    code = question.parse(text)
    if code is None:
        raise NoOptionNamed(f"names no option of {question.key}: {text[:200]!r}")
    return code


def build_survey_graph():
    graph = StateGraph(SurveyState, context_schema=SurveyContext)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()


survey_graph = build_survey_graph()
