"""`evaluate` on the runner: each (model, item, sample) is one thread of the evaluation graph; its
answer goes to predictions.jsonl as it comes, and the scores, report and plots are made at the end
from the predictions, so a resumed run scores exactly what one uninterrupted run would."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

import prompts
from evals.data import TaskData
from evals.tasks import Task
from graphs.answer_job import AnswerJob
from graphs.evaluate import EvalCase, EvalContext, EvalState, evaluate_graph

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


class EvaluateJob(AnswerJob[EvalCase, EvalOutcome, PredictionRecord]):
    prompt_names = prompts.EVALUATE_PROMPTS
    records_file = PREDICTIONS
    record_type = PredictionRecord
    compiled_graph = evaluate_graph

    def __init__(
        self,
        context: EvalContext,
        *,
        model_names: Sequence[str],
        data: Sequence[TaskData],
        missing: Sequence[Task],
        report: Any,
    ) -> None:
        super().__init__(context, report=report)
        self.model_names = list(model_names)
        self.data = list(data)
        self.missing = list(missing)

    def graph_input(self, item: EvalCase) -> EvalState:
        return EvalState(case=item)

    def outcome(self, item: EvalCase, values: dict[str, Any]) -> EvalOutcome:
        return EvalOutcome(item=item, raw=values["raw"] or "", label=values["label"])

    def failed(self, item: EvalCase, reason: str) -> EvalOutcome:
        return EvalOutcome(item=item, failure=reason)

    def record_of(self, outcome: EvalOutcome) -> PredictionRecord:
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

    def record_key(self, record: PredictionRecord) -> str:
        return f"{record.column}/{record.task}/{record.item_id}/{record.sample}"

    def outcome_of(self, case: EvalCase, record: PredictionRecord) -> EvalOutcome:
        return EvalOutcome(item=case, raw=record.raw, label=record.label)

    def kept(self, outcome: EvalOutcome) -> int:
        return int(outcome.label is not None)

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
