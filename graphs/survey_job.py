"""`evaluate --suite wvs|hofstede` on the runner: each (model, question, sample) is one thread of the
survey graph; its answer goes to answers.jsonl as it comes, and the scores, report and plots are made
at the end from the answers, so a resumed run scores exactly what one uninterrupted run would."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from graphs.answer_job import AnswerJob
from graphs.survey import SurveyCase, SurveyContext, SurveyState, survey_graph

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


class SurveyJob(AnswerJob[SurveyCase, SurveyOutcome, SurveyAnswerRecord]):
    records_file = ANSWERS
    record_type = SurveyAnswerRecord
    compiled_graph = survey_graph

    def __init__(
        self,
        context: SurveyContext,
        *,
        model_names: Sequence[str],
        prompt_names: Sequence[str],
        manifest_extra: dict[str, Any],
        report: Callable[[Sequence[SurveyOutcome], SurveyJob, Any], dict[str, Any]],
    ) -> None:
        super().__init__(context, report=report)
        self.model_names = list(model_names)
        self.prompt_names = tuple(prompt_names)
        self.manifest_extra = manifest_extra

    def graph_input(self, item: SurveyCase) -> SurveyState:
        return SurveyState(case=item)

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

    def record_key(self, record: SurveyAnswerRecord) -> str:
        return f"{record.column}/{record.suite}/{record.culture}/{record.question}/{record.sample}"

    def outcome_of(self, case: SurveyCase, record: SurveyAnswerRecord) -> SurveyOutcome:
        return SurveyOutcome(item=case, raw=record.raw, code=record.code, probabilities=record.probabilities)

    def kept(self, outcome: SurveyOutcome) -> int:
        return int(outcome.code is not None)

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
