"""`augment` on the runner: each seed is one thread of the augmentation graph, its kept samples go to
samples.jsonl and every candidate the judge scored to candidates.jsonl (what `rejudge` re-scores)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

import prompts
from agents.selector import ScoredCandidate
from graphs.augment import AugmentContext, augment_graph
from graphs.runner import ItemJob
from graphs.state import CHECKPOINTED_ROWS, CHECKPOINTED_TYPES, AugmentInput, JudgedCandidate, SeedStats
from storage.records import SampleRecord, Seed
from storage.run_store import CANDIDATES, SAMPLES, RunStore


@dataclass
class SeedOutcome:
    seed: Seed
    samples: list[ScoredCandidate] = field(default_factory=list)
    judged: list[JudgedCandidate] = field(default_factory=list)
    stats: SeedStats = field(default_factory=SeedStats)
    failure: str | None = None

    @property
    def item(self) -> Seed:
        return self.seed


def sample_records(
    seed: Seed, chosen: Sequence[ScoredCandidate], generator: str, judge: str
) -> list[SampleRecord]:
    """The samples.jsonl lines of one seed's chosen candidates."""
    return [
        SampleRecord(
            seed_id=seed.q_id,
            topic=seed.topic,
            seed=seed.q_content,
            text=c.text,
            stage=c.stage,  # type: ignore[arg-type]
            similarity=c.similarity,
            option=seed.option,
            generator=generator,
            judge=judge,
            base=c.base,
        )
        for c in chosen
    ]


def stored_samples(store: RunStore, seed_ids: set[str]) -> dict[str, list[ScoredCandidate]]:
    """The samples.jsonl lines of the given seeds, back as candidates, in file order."""
    found: dict[str, list[ScoredCandidate]] = {}
    for record in store.read_records(SAMPLES, SampleRecord):
        if record.seed_id in seed_ids:
            candidate = ScoredCandidate(
                text=record.text, stage=record.stage, base=record.base, similarity=record.similarity
            )
            found.setdefault(record.seed_id, []).append(candidate)
    return found


class AugmentJob(ItemJob[Seed, SeedOutcome]):
    command = "augment"
    unit = "seeds"
    prompt_names = prompts.AUGMENT_PROMPTS
    checkpointed_types = CHECKPOINTED_TYPES
    checkpointed_rows = CHECKPOINTED_ROWS

    def __init__(self, context: AugmentContext) -> None:
        self._context = context
        self.generator = context.generator.spec
        self.judge = context.judge.spec

    @property
    def context(self) -> AugmentContext:
        return self._context

    def item_id(self, item: Seed) -> str:
        return item.q_id

    def graph(self, checkpointer: BaseCheckpointSaver | None) -> Any:
        # A copy: compiling the graph again took ~20 ms per run.
        return augment_graph if checkpointer is None else augment_graph.copy({"checkpointer": checkpointer})

    def graph_input(self, item: Seed) -> AugmentInput:
        return AugmentInput(seed=item)

    def finished(self, values: dict[str, Any]) -> bool:
        return values.get("samples") is not None and bool(values.get("stats"))

    def outcome(self, item: Seed, values: dict[str, Any]) -> SeedOutcome:
        return SeedOutcome(
            seed=item, samples=list(values["samples"]), judged=list(values["judged"]), stats=values["stats"]
        )

    def failed(self, item: Seed, reason: str) -> SeedOutcome:
        return SeedOutcome(seed=item, failure=reason)

    def records(self, outcome: SeedOutcome) -> list[SampleRecord]:
        return sample_records(outcome.seed, outcome.samples, self.generator, self.judge)

    def restore(self, store: RunStore, done: dict[str, tuple[Seed, dict]]) -> dict[str, SeedOutcome]:
        restored = {
            q_id: SeedOutcome(seed=seed, stats=SeedStats(**record.get("stats", {})))
            for q_id, (seed, record) in done.items()
        }
        for q_id, samples in stored_samples(store, set(restored)).items():
            restored[q_id].samples = samples
        return restored

    async def keep_only(self, store: RunStore, outcomes: Sequence[SeedOutcome]) -> None:
        await store.rewrite_records(SAMPLES, [r for o in outcomes for r in self.records(o)])
        finished = {o.seed.q_id for o in outcomes}
        await store.rewrite_records(
            CANDIDATES, [c for c in store.read_candidates() if c["seed_id"] in finished]
        )

    async def record(self, store: RunStore, outcome: SeedOutcome) -> None:
        await store.append_records(SAMPLES, self.records(outcome))
        await store.append_records(
            CANDIDATES, [{"seed_id": outcome.seed.q_id, **c._asdict()} for c in outcome.judged]
        )

    async def finish(self, store: RunStore, outcomes: Sequence[SeedOutcome]) -> None:
        await store.rewrite_records(SAMPLES, [r for o in outcomes for r in self.records(o)])

    def progress_fields(self, outcome: SeedOutcome) -> dict[str, Any]:
        return {"seed_id": outcome.seed.q_id, "stats": asdict(outcome.stats)}

    def kept(self, outcome: SeedOutcome) -> int:
        return len(outcome.samples)

    def slots(self, concurrency: int) -> int:
        return min(concurrency, self._context.generator.parallelism or concurrency)

    def item_summary(self, outcome: SeedOutcome) -> dict[str, Any]:
        return {"kept": len(outcome.samples), **asdict(outcome.stats)}

    def manifest_fields(self, outcomes: Sequence[SeedOutcome], total: int, totals: dict[str, Any]) -> dict:
        stats = [o.stats for o in outcomes]

        def sum_of(name: str) -> int:
            return sum(getattr(s, name) for s in stats)

        done = [o for o in outcomes if not o.failure]
        return {
            "generator": self.generator,
            "judge": self.judge,
            "counts": {
                "seeds": total,
                "seeds_done": len(done),
                "seeds_failed": len(outcomes) - len(done),
                "seeds_with_samples": sum(1 for o in done if o.samples),
                "samples": sum(len(o.samples) for o in outcomes),
                "llm_calls_per_seed": round(totals["llm_calls"] / len(outcomes), 2) if outcomes else 0.0,
                "paraphrase_rounds": sum_of("paraphrase_rounds"),
                "candidates": {
                    "paraphrase": {
                        "generated": sum_of("paraphrases_generated"),
                        "accepted": sum_of("paraphrases_accepted"),
                        "rejected_by_judge": sum_of("paraphrases_rejected"),
                        "rejected_by_guard": sum_of("paraphrases_guarded"),
                    },
                    "synonym": {
                        "generated": sum_of("substitutions_generated"),
                        "accepted": sum_of("substitutions_accepted"),
                        "rejected_by_judge": sum_of("substitutions_rejected"),
                        "rejected_by_guard": sum_of("substitutions_guarded"),
                        "synonym_calls_unusable": sum_of("synonym_calls_failed"),
                    },
                },
            },
        }

    async def close(self) -> None:
        await asyncio.gather(
            self._context.generator.aclose(), self._context.judge.aclose(), return_exceptions=True
        )
