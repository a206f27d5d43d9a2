"""`evaluate` on the runner: each (model, item, sample) is one thread of the evaluation graph; its
answer goes to predictions.jsonl as it comes, and the scores, report and plots are made at the end
from the predictions, so a resumed run scores exactly what one uninterrupted run would."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

import prompts
from evals.data import TaskData
from evals.tasks import Task
from graphs.evaluate import EvalCase, EvalContext, EvalState, evaluate_graph
from graphs.runner import ItemJob
from storage.run_store import RunStore

PREDICTIONS = "predictions.jsonl"


class PredictionRecord(BaseModel):
    """One line of predictions.jsonl."""

    model: str  # the model's spec (with its adapter, if any)
    column: int  # its position among the run's --model flags
    task: str
    culture: str
    item_id: str
    sample: int
    gold: str
    raw: str
    label: str | None  # None: the answer committed to no label (invalid, scored as wrong)


@dataclass
class EvalOutcome:
    item: EvalCase
    raw: str = ""
    label: str | None = None
    failure: str | None = None


class EvaluateJob(ItemJob[EvalCase, EvalOutcome]):
    command = "evaluate"
    unit = "answers"
    prompt_names = prompts.EVALUATE_PROMPTS
    checkpointed = False  # one step: the ledger replays its one call on resume
    lists_items = False  # predictions.jsonl has every answer

    def __init__(
        self,
        context: EvalContext,
        *,
        model_names: Sequence[str],
        data: Sequence[TaskData],
        missing: Sequence[Task],
        report: Any,
    ) -> None:
        self._context = context
        self.model_names = list(model_names)
        self.data = list(data)
        self.missing = list(missing)
        self._report = report  # (outcomes, job) -> awaitable that writes results, report and plots
        self.results: dict[str, Any] | None = None

    @property
    def context(self) -> EvalContext:
        return self._context

    def item_id(self, item: EvalCase) -> str:
        return item.key

    def graph(self, checkpointer: BaseCheckpointSaver | None) -> Any:
        return evaluate_graph if checkpointer is None else evaluate_graph.copy({"checkpointer": checkpointer})

    def graph_input(self, item: EvalCase) -> EvalState:
        return EvalState(case=item)

    def finished(self, values: dict[str, Any]) -> bool:
        return bool(values.get("answered"))

    def outcome(self, item: EvalCase, values: dict[str, Any]) -> EvalOutcome:
        return EvalOutcome(item=item, raw=values["raw"] or "", label=values["label"])

    def failed(self, item: EvalCase, reason: str) -> EvalOutcome:
        return EvalOutcome(item=item, failure=reason)

    def prediction(self, outcome: EvalOutcome) -> PredictionRecord:
        case = outcome.item
        return PredictionRecord(
            model=self.model_names[case.model],
            column=case.model,
            task=case.item.task,
            culture=self._context.tasks[case.item.task].culture,
            item_id=case.item.item_id,
            sample=case.sample,
            gold=case.item.gold,
            raw=outcome.raw,
            label=outcome.label,
        )

    def restore(self, store: RunStore, done: dict[str, tuple[EvalCase, dict]]) -> dict[str, EvalOutcome]:
        by_key = {
            f"{r.column}/{r.task}/{r.item_id}/{r.sample}": r
            for r in store.read_records(PREDICTIONS, PredictionRecord)
        }
        restored = {}
        for key, (case, _) in done.items():
            record = by_key.get(key)
            if record is not None:  # a prediction torn by a kill is asked again (from the ledger)
                restored[key] = EvalOutcome(item=case, raw=record.raw, label=record.label)
        return restored

    async def keep_only(self, store: RunStore, outcomes: Sequence[EvalOutcome]) -> None:
        await store.rewrite_records(PREDICTIONS, [self.prediction(o) for o in outcomes])

    async def record(self, store: RunStore, outcome: EvalOutcome) -> None:
        if not outcome.failure:
            await store.append_records(PREDICTIONS, [self.prediction(outcome)])

    async def finish(self, store: RunStore, outcomes: Sequence[EvalOutcome]) -> None:
        answered = [o for o in outcomes if not o.failure]
        await store.rewrite_records(PREDICTIONS, [self.prediction(o) for o in answered])
        self.results = await asyncio.to_thread(self._report, answered, self, store.root)

    def progress_fields(self, outcome: EvalOutcome) -> dict[str, Any]:
        return {}

    def kept(self, outcome: EvalOutcome) -> int:
        return int(outcome.label is not None)

    def slots(self, concurrency: int) -> int:
        parallel = [m.parallelism or concurrency for m in self._context.models]
        return min(concurrency, max(parallel))

    def item_summary(self, outcome: EvalOutcome) -> dict[str, Any]:
        return {"label": outcome.label}

    def manifest_fields(self, outcomes: Sequence[EvalOutcome], total: int, totals: dict[str, Any]) -> dict:
        answered = [o for o in outcomes if not o.failure]
        per_model = {
            name: {
                "answers": sum(1 for o in answered if o.item.model == index),
                "invalid": sum(1 for o in answered if o.item.model == index and o.label is None),
            }
            for index, name in enumerate(self.model_names)
        }
        return {
            "models": self.model_names,
            "tasks": [data.task.key for data in self.data],
            "missing_tasks": [task.key for task in self.missing],
            "data": {
                data.task.key: {
                    "file": str(data.path),
                    "items": len(data.items),
                    "unlabelled": data.unlabelled,
                    "empty_texts": data.empty_texts,
                    "truncated": data.truncated,
                    "unknown_labels": data.unknown_labels,
                    "conflicting": data.conflicting,
                    "broken_lines": data.broken_lines[:10],
                }
                for data in self.data
            },
            "counts": {"answers": total, "answered": len(answered), "by_model": per_model},
            "results": self.results,
        }

    async def close(self) -> None:
        await asyncio.gather(*(m.aclose() for m in self._context.models), return_exceptions=True)
