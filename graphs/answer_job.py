"""What evaluate's jobs share: each case is one model call of a one-step graph, its answer is appended
to a JSONL file of records as it comes, and the scores, report and plots are made at the end from
those records, so a resumed run scores exactly what one uninterrupted run would.

A subclass says which graph it runs, how an outcome becomes a record and back, and what its manifest
holds; the rest (restore, keep_only, streaming, finishing, slots, closing the models) lives here.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

from graphs.runner import ItemJob
from storage.run_store import RunStore

CaseT = TypeVar("CaseT")
OutcomeT = TypeVar("OutcomeT")
RecordT = TypeVar("RecordT", bound=BaseModel)


class AnswerJob(ItemJob[CaseT, OutcomeT], Generic[CaseT, OutcomeT, RecordT]):
    command = "evaluate"
    unit = "answers"
    checkpointed = False  # one step: the ledger replays its one call on resume
    lists_items = False  # the records file has every answer

    records_file: str  # "predictions.jsonl", "answers.jsonl"
    record_type: type[RecordT]
    compiled_graph: Any  # the one-step graph every case runs

    def __init__(
        self, context: Any, *, report: Callable[[Sequence[OutcomeT], Any, Any], dict[str, Any]]
    ) -> None:
        self._context = context
        self._report = report  # (answered outcomes, job, run root) -> the manifest's results summary
        self.results: dict[str, Any] | None = None

    @property
    def context(self) -> Any:
        return self._context

    @abstractmethod
    def record_of(self, outcome: OutcomeT) -> RecordT:
        """The outcome's line in the records file."""

    @abstractmethod
    def record_key(self, record: RecordT) -> str:
        """The item_id of the case a record answers."""

    @abstractmethod
    def outcome_of(self, case: CaseT, record: RecordT) -> OutcomeT:
        """The outcome a record restores."""

    def item_id(self, item: Any) -> str:
        return item.key

    def graph(self, checkpointer: BaseCheckpointSaver | None) -> Any:
        graph = self.compiled_graph
        return graph if checkpointer is None else graph.copy({"checkpointer": checkpointer})

    def finished(self, values: dict[str, Any]) -> bool:
        return bool(values.get("answered"))

    def restore(self, store: RunStore, done: dict[str, tuple[CaseT, dict]]) -> dict[str, OutcomeT]:
        by_key = {self.record_key(r): r for r in store.read_records(self.records_file, self.record_type)}
        restored = {}
        for key, (case, _) in done.items():
            record = by_key.get(key)
            if record is not None:  # an answer torn by a kill is asked again (from the ledger)
                restored[key] = self.outcome_of(case, record)
        return restored

    async def keep_only(self, store: RunStore, outcomes: Sequence[OutcomeT]) -> None:
        await store.rewrite_records(self.records_file, [self.record_of(o) for o in outcomes])

    async def record(self, store: RunStore, outcome: OutcomeT) -> None:
        if not outcome.failure:  # type: ignore[attr-defined]
            await store.append_records(self.records_file, [self.record_of(outcome)])

    async def finish(self, store: RunStore, outcomes: Sequence[OutcomeT]) -> None:
        answered = [o for o in outcomes if not o.failure]  # type: ignore[attr-defined]
        await store.rewrite_records(self.records_file, [self.record_of(o) for o in answered])
        self.results = await asyncio.to_thread(self._report, answered, self, store.root)

    def progress_fields(self, outcome: OutcomeT) -> dict[str, Any]:
        return {}

    def slots(self, concurrency: int) -> int:
        # A local model batches (hf:) or serialises (llama.cpp) its calls: keep as many in flight as
        # the most parallel of the run's models can use.
        parallel = [m.parallelism or concurrency for m in self._context.models]
        return min(concurrency, max(parallel))

    async def close(self) -> None:
        await asyncio.gather(*(m.aclose() for m in self._context.models), return_exceptions=True)
