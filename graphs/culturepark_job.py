"""`culturepark` on the runner: each (culture, seed) is one thread of the CulturePark graph; its dialogue
goes to dialogues.jsonl and its kept opinions to opinions.jsonl as it finishes. At the end, opinions
that repeat an earlier one anywhere in the run (cosine >= the near-duplicate threshold) are dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agents.dialogue import Utterance
from langgraph.checkpoint.base import BaseCheckpointSaver

import prompts
from graphs.culturepark import (
    CHECKPOINTED_ROWS,
    CHECKPOINTED_TYPES,
    ParkContext,
    ParkInput,
    ParkItem,
    ParkStats,
    VerifiedOpinion,
    culturepark_graph,
    pair_of,
)
from graphs.runner import ItemJob
from storage.records import DialogueRecord, DialogueTurn, OpinionRecord
from storage.run_store import RunStore

DIALOGUES = "dialogues.jsonl"
OPINIONS = "opinions.jsonl"


@dataclass
class ParkOutcome:
    item: ParkItem
    transcript: list[Utterance] = field(default_factory=list)
    kept: list[VerifiedOpinion] = field(default_factory=list)
    stats: ParkStats = field(default_factory=ParkStats)
    near_duplicates: int = 0  # kept by the dialogue's clustering, dropped as repeats across the run
    failure: str | None = None


class CultureParkJob(ItemJob[ParkItem, ParkOutcome]):
    command = "culturepark"
    unit = "dialogues"
    prompt_names = prompts.CULTUREPARK_PROMPTS
    checkpointed_types = CHECKPOINTED_TYPES
    checkpointed_rows = CHECKPOINTED_ROWS

    def __init__(
        self,
        context: ParkContext,
        *,
        near_duplicate: float,
        skipped: dict[str, list[str]] | None = None,
    ) -> None:
        self._context = context
        self.near_duplicate = near_duplicate
        self.skipped = skipped or {}
        self.generator = context.generator.spec
        self.verifier = context.verifier.spec

    @property
    def context(self) -> ParkContext:
        return self._context

    def item_id(self, item: ParkItem) -> str:
        return item.key

    def graph(self, checkpointer: BaseCheckpointSaver | None) -> Any:
        if checkpointer is None:
            return culturepark_graph
        return culturepark_graph.copy({"checkpointer": checkpointer})

    def graph_input(self, item: ParkItem) -> ParkInput:
        return ParkInput(item=item)

    def finished(self, values: dict[str, Any]) -> bool:
        return values.get("kept") is not None

    def outcome(self, item: ParkItem, values: dict[str, Any]) -> ParkOutcome:
        return ParkOutcome(
            item=item, transcript=list(values["transcript"]), kept=list(values["kept"]), stats=values["stats"]
        )

    def failed(self, item: ParkItem, reason: str) -> ParkOutcome:
        return ParkOutcome(item=item, failure=reason)

    # -- records -------------------------------------------------------------------------------

    def dialogue_record(self, outcome: ParkOutcome) -> DialogueRecord:
        item, params = outcome.item, self._context.params
        pair = pair_of(item, params)
        return DialogueRecord(
            culture=item.culture,
            seed_id=item.seed.q_id,
            seed=item.seed.q_content,
            mode=params.mode,
            style=params.style,
            personas=[asdict(p) for p in pair],
            turns=[DialogueTurn(speaker=pair[u.speaker].name, text=u.text) for u in outcome.transcript],
            generator=self.generator,
        )

    def opinion_records(self, outcome: ParkOutcome) -> list[OpinionRecord]:
        item = outcome.item
        return [
            OpinionRecord(
                culture=item.culture,
                seed_id=item.seed.q_id,
                seed=item.seed.q_content,
                option=item.seed.option,
                label=item.attitude.label,
                attitude=item.attitude.statement,
                opinion=o.text,
                speaker=o.speaker,
                verdict=o.verdict,  # type: ignore[arg-type]
                rewritten=o.rewritten,
                original=o.original or None,
                cluster=o.cluster,
                generator=self.generator,
                verifier=self.verifier,
            )
            for o in outcome.kept
        ]

    async def _write(self, store: RunStore, outcomes: Sequence[ParkOutcome], *, append: bool) -> None:
        done = [o for o in outcomes if not o.failure]
        dialogues = [self.dialogue_record(o) for o in done]
        opinions = [r for o in done for r in self.opinion_records(o)]
        if append:
            await store.append_records(DIALOGUES, dialogues)
            await store.append_records(OPINIONS, opinions)
        else:
            await store.rewrite_records(DIALOGUES, dialogues)
            await store.rewrite_records(OPINIONS, opinions)

    def restore(self, store: RunStore, done: dict[str, tuple[ParkItem, dict]]) -> dict[str, ParkOutcome]:
        restored = {
            key: ParkOutcome(item=item, stats=ParkStats(**record.get("stats", {})))
            for key, (item, record) in done.items()
        }
        for dialogue in store.read_records(DIALOGUES, DialogueRecord):
            outcome = restored.get(f"{dialogue.culture}/{dialogue.seed_id}")
            if outcome is not None:
                names = [p["name"] for p in dialogue.personas]
                outcome.transcript = [Utterance(names.index(t.speaker), t.text) for t in dialogue.turns]
        for record in store.read_records(OPINIONS, OpinionRecord):
            outcome = restored.get(f"{record.culture}/{record.seed_id}")
            if outcome is not None:
                outcome.kept.append(
                    VerifiedOpinion(
                        record.speaker,
                        record.opinion,
                        record.verdict,
                        record.rewritten,
                        record.original or "",
                        record.cluster,
                    )
                )
        return restored

    async def keep_only(self, store: RunStore, outcomes: Sequence[ParkOutcome]) -> None:
        await self._write(store, outcomes, append=False)

    async def record(self, store: RunStore, outcome: ParkOutcome) -> None:
        await self._write(store, [outcome], append=True)

    async def finish(self, store: RunStore, outcomes: Sequence[ParkOutcome]) -> None:
        """Drop opinions that repeat an earlier one of the run, then write both files in item order."""
        from agents.dedup import near_duplicates

        owners = [(o, i) for o in outcomes if not o.failure for i in range(len(o.kept))]
        if owners:
            vectors = await self._context.embedder.embed([o.kept[i].text for o, i in owners])
            dropped: dict[int, set[int]] = {}
            for index in near_duplicates(vectors, self.near_duplicate):
                outcome, position = owners[index]
                dropped.setdefault(id(outcome), set()).add(position)
            for outcome in outcomes:
                gone = dropped.get(id(outcome), set())
                outcome.near_duplicates = len(gone)
                outcome.kept = [o for i, o in enumerate(outcome.kept) if i not in gone]
        await self._write(store, outcomes, append=False)

    # -- accounting ----------------------------------------------------------------------------

    def progress_fields(self, outcome: ParkOutcome) -> dict[str, Any]:
        return {"stats": asdict(outcome.stats)}

    def kept(self, outcome: ParkOutcome) -> int:
        return len(outcome.kept)

    def slots(self, concurrency: int) -> int:
        return min(concurrency, self._context.generator.parallelism or concurrency)

    def item_summary(self, outcome: ParkOutcome) -> dict[str, Any]:
        return {
            **asdict(outcome.stats),
            "near_duplicates": outcome.near_duplicates,
            "kept": len(outcome.kept),
        }

    def manifest_fields(self, outcomes: Sequence[ParkOutcome], total: int, totals: dict[str, Any]) -> dict:
        stats = [o.stats for o in outcomes if not o.failure]

        def sum_of(name: str) -> int:
            return sum(getattr(s, name) for s in stats)

        extracted = sum_of("opinions_extracted")
        kept = sum(len(o.kept) for o in outcomes)
        params = self._context.params
        return {
            "generator": self.generator,
            "verifier": self.verifier,
            "embedder": self._context.embedder.spec,
            "skipped_questions": self.skipped,
            "counts": {
                "dialogues": total,
                "dialogues_done": len(stats),
                "dialogues_failed": len(outcomes) - len(stats),
                "lines": sum_of("lines"),
                "lines_per_dialogue": 2 * params.turns,
                "llm_calls_per_dialogue": round(totals["llm_calls"] / len(outcomes), 2) if outcomes else 0.0,
                "opinions": {
                    "extracted": extracted,
                    "extraction_calls_unusable": sum_of("extraction_calls_unusable"),
                    "entailed": sum_of("entailed"),
                    "contradicted": sum_of("contradicted"),
                    "unrelated": sum_of("unrelated"),
                    "rewrites": sum_of("rewrites"),
                    "rewrite_calls_unusable": sum_of("rewrite_calls_unusable"),
                    "rewrites_kept": sum_of("rewrites_kept"),
                    "rewrites_dropped": sum_of("rewrites_dropped"),
                    "verified": sum_of("verified"),
                    "clustered_out": sum_of("clustered_out"),
                    "near_duplicates": sum(o.near_duplicates for o in outcomes),
                    "kept": kept,
                },
                # Share of extracted opinions that survive each stage.
                "yield": {
                    "verified": round(sum_of("verified") / extracted, 3) if extracted else 0.0,
                    "kept": round(kept / extracted, 3) if extracted else 0.0,
                },
                "skipped_questions": sum(len(q) for q in self.skipped.values()),
            },
        }

    async def close(self) -> None:
        await asyncio.gather(
            self._context.generator.aclose(),
            self._context.verifier.aclose(),
            self._context.embedder.aclose(),
            return_exceptions=True,
        )
