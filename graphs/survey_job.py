"""`evaluate --suite wvs|hofstede` on the runner: each (model, question, sample) is one thread of the
survey graph; its answer goes to answers.jsonl as it comes, and the scores, report and plots are made
at the end from the answers, so a resumed run scores exactly what one uninterrupted run would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

from graphs.runner import ItemJob
from graphs.survey import SurveyCase, SurveyContext, SurveyState, survey_graph
from storage.run_store import RunStore

ANSWERS = "answers.jsonl"


class SurveyAnswerRecord(BaseModel):
    """One line of answers.jsonl."""

    model: str
    column: int
    suite: str
    culture: str
    question: str
    sample: int  # -1: option probabilities
    raw: str
    code: int | None  # None: the answer named no option (unparsable)
    probabilities: dict[int, float] | None = None


@dataclass
class SurveyOutcome:
    item: SurveyCase
    raw: str = ""
    code: int | None = None
    probabilities: dict[int, float] | None = None
    failure: str | None = None


class SurveyJob(ItemJob[SurveyCase, SurveyOutcome]):
    command = "evaluate"
    unit = "answers"
    checkpointed = False  # one step: the ledger replays its one call on resume
    lists_items = False  # answers.jsonl has every answer

    def __init__(
        self,
        context: SurveyContext,
        *,
        model_names: Sequence[str],
        prompt_names: Sequence[str],
        manifest_extra: dict[str, Any],
        report: Callable[[Sequence[SurveyOutcome], SurveyJob, Any], dict[str, Any]],
    ) -> None:
        self._context = context
        self.model_names = list(model_names)
        self.prompt_names = tuple(prompt_names)
        self.manifest_extra = manifest_extra
        self._report = report
        self.results: dict[str, Any] | None = None

    @property
    def context(self) -> SurveyContext:
        return self._context

    def item_id(self, item: SurveyCase) -> str:
        return item.key

    def graph(self, checkpointer: BaseCheckpointSaver | None) -> Any:
        return survey_graph if checkpointer is None else survey_graph.copy({"checkpointer": checkpointer})

    def graph_input(self, item: SurveyCase) -> SurveyState:
        return SurveyState(case=item)

    def finished(self, values: dict[str, Any]) -> bool:
        return bool(values.get("answered"))

    def outcome(self, item: SurveyCase, values: dict[str, Any]) -> SurveyOutcome:
        return SurveyOutcome(
            item=item, raw=values["raw"] or "", code=values["code"], probabilities=values.get("probabilities")
        )

    def failed(self, item: SurveyCase, reason: str) -> SurveyOutcome:
        return SurveyOutcome(item=item, failure=reason)

    def record_of(self, outcome: SurveyOutcome) -> SurveyAnswerRecord:
        case = outcome.item
        question = self._context.questions[case.question]
        return SurveyAnswerRecord(
            model=self.model_names[case.model],
            column=case.model,
            suite=question.suite,
            culture=question.culture,
            question=question.question,
            sample=case.sample,
            raw=outcome.raw,
            code=outcome.code,
            probabilities=outcome.probabilities,
        )

    def restore(self, store: RunStore, done: dict[str, tuple[SurveyCase, dict]]) -> dict[str, SurveyOutcome]:
        by_key = {
            f"{r.column}/{r.suite}/{r.culture}/{r.question}/{r.sample}": r
            for r in store.read_records(ANSWERS, SurveyAnswerRecord)
        }
        restored = {}
        for key, (case, _) in done.items():
            record = by_key.get(key)
            if record is not None:  # an answer torn by a kill is asked again (from the ledger)
                restored[key] = SurveyOutcome(
                    item=case, raw=record.raw, code=record.code, probabilities=record.probabilities
                )
        return restored

    async def keep_only(self, store: RunStore, outcomes: Sequence[SurveyOutcome]) -> None:
        await store.rewrite_records(ANSWERS, [self.record_of(o) for o in outcomes])

    async def record(self, store: RunStore, outcome: SurveyOutcome) -> None:
        if not outcome.failure:
            await store.append_records(ANSWERS, [self.record_of(outcome)])

    async def finish(self, store: RunStore, outcomes: Sequence[SurveyOutcome]) -> None:
        answered = [o for o in outcomes if not o.failure]
        await store.rewrite_records(ANSWERS, [self.record_of(o) for o in answered])
        self.results = await asyncio.to_thread(self._report, answered, self, store.root)

    def progress_fields(self, outcome: SurveyOutcome) -> dict[str, Any]:
        return {}

    def kept(self, outcome: SurveyOutcome) -> int:
        return int(outcome.code is not None)

    def slots(self, concurrency: int) -> int:
        parallel = [m.parallelism or concurrency for m in self._context.models]
        return min(concurrency, max(parallel))

    def item_summary(self, outcome: SurveyOutcome) -> dict[str, Any]:
        return {"code": outcome.code}

    def manifest_fields(self, outcomes: Sequence[SurveyOutcome], total: int, totals: dict[str, Any]) -> dict:
        answered = [o for o in outcomes if not o.failure]
        per_model = {
            name: {
                "answers": sum(1 for o in answered if o.item.model == index),
                "unparsable": sum(1 for o in answered if o.item.model == index and o.code is None),
            }
            for index, name in enumerate(self.model_names)
        }
        return {
            "models": self.model_names,
            **self.manifest_extra,
            "counts": {"answers": total, "answered": len(answered), "by_model": per_model},
            "results": self.results,
        }

    async def close(self) -> None:
        await asyncio.gather(*(m.aclose() for m in self._context.models), return_exceptions=True)
