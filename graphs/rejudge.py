"""Re-judging a finished augment run: another judge or threshold over its stored candidates, no
generator calls. Each seed is one thread of a two-step graph on the shared runner, so a re-judge with
an API judge has the run's gate, ledger, checkpoints, lock, Ctrl-C and --resume like any other run.

    judge_candidates -> select_samples -> END

Only the candidates the first run judged are re-scored: a paraphrase the first judge rejected was
never substituted, so a laxer judge can keep that paraphrase but cannot conjure its substitutions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.judge import Judge
from agents.selector import ScoredCandidate, select_samples
from graphs.augment_job import sample_records, stored_samples
from graphs.runner import ItemJob
from storage.records import SampleRecord, Seed
from storage.run_store import SAMPLES, RunStore


@dataclass(frozen=True)
class RejudgeItem:
    seed: Seed
    candidates: tuple[ScoredCandidate, ...]


@dataclass(frozen=True)
class RejudgeContext:
    judge: Judge
    m: int


@dataclass
class RejudgeState:
    seed: Seed
    candidates: list[ScoredCandidate]
    accepted: list[ScoredCandidate] = field(default_factory=list)
    samples: list[ScoredCandidate] | None = None


async def judge_candidates(state: RejudgeState, runtime: Runtime[RejudgeContext]) -> dict:
    verdicts = await runtime.context.judge.judge(state.seed.q_content, [c.text for c in state.candidates])
    accepted = [
        c._replace(similarity=v.score) for c, v in zip(state.candidates, verdicts, strict=True) if v.accepted
    ]
    return {"accepted": accepted}


async def select(state: RejudgeState, runtime: Runtime[RejudgeContext]) -> dict:
    return {"samples": select_samples(state.accepted, state.seed.q_content, runtime.context.m)}


def build_rejudge_graph():
    graph = StateGraph(RejudgeState, context_schema=RejudgeContext)
    graph.add_node("judge_candidates", judge_candidates)
    graph.add_node("select_samples", select)
    graph.add_edge(START, "judge_candidates")
    graph.add_edge("judge_candidates", "select_samples")
    graph.add_edge("select_samples", END)
    return graph.compile()


rejudge_graph = build_rejudge_graph()


def rejudge_items(seeds: Sequence[Seed], candidates: Sequence[dict[str, Any]]) -> list[RejudgeItem]:
    """The seeds that have candidates in the source run, each with its candidates in file order."""
    by_seed: dict[str, list[ScoredCandidate]] = {}
    for c in candidates:
        by_seed.setdefault(str(c["seed_id"]), []).append(
            ScoredCandidate(text=c["text"], stage=c["stage"], base=c["base"], similarity=0.0)
        )
    return [RejudgeItem(seed, tuple(by_seed[seed.q_id])) for seed in seeds if seed.q_id in by_seed]


@dataclass
class RejudgeOutcome:
    item: RejudgeItem
    accepted: int = 0
    samples: list[ScoredCandidate] = field(default_factory=list)
    failure: str | None = None


class RejudgeJob(ItemJob[RejudgeItem, RejudgeOutcome]):
    command = "rejudge"
    unit = "seeds"
    checkpointed_types = (Seed, ScoredCandidate)
    checkpointed_rows = (ScoredCandidate,)

    def __init__(self, context: RejudgeContext, *, generator: str, source: str) -> None:
        self._context = context
        self.generator = generator
        self.source = source

    @property
    def context(self) -> RejudgeContext:
        return self._context

    def item_id(self, item: RejudgeItem) -> str:
        return item.seed.q_id

    def graph(self, checkpointer: BaseCheckpointSaver | None) -> Any:
        return rejudge_graph if checkpointer is None else rejudge_graph.copy({"checkpointer": checkpointer})

    def graph_input(self, item: RejudgeItem) -> RejudgeState:
        return RejudgeState(seed=item.seed, candidates=list(item.candidates))

    def finished(self, values: dict[str, Any]) -> bool:
        return values.get("samples") is not None

    def outcome(self, item: RejudgeItem, values: dict[str, Any]) -> RejudgeOutcome:
        return RejudgeOutcome(item=item, accepted=len(values["accepted"]), samples=list(values["samples"]))

    def failed(self, item: RejudgeItem, reason: str) -> RejudgeOutcome:
        return RejudgeOutcome(item=item, failure=reason)

    def records(self, outcome: RejudgeOutcome) -> list[SampleRecord]:
        return sample_records(outcome.item.seed, outcome.samples, self.generator, self._context.judge.spec)

    def restore(
        self, store: RunStore, done: dict[str, tuple[RejudgeItem, dict]]
    ) -> dict[str, RejudgeOutcome]:
        restored = {
            key: RejudgeOutcome(item=item, accepted=int(record.get("accepted", 0)))
            for key, (item, record) in done.items()
        }
        for q_id, samples in stored_samples(store, set(restored)).items():
            restored[q_id].samples = samples
        return restored

    async def keep_only(self, store: RunStore, outcomes: Sequence[RejudgeOutcome]) -> None:
        await store.rewrite_records(SAMPLES, [r for o in outcomes for r in self.records(o)])

    async def record(self, store: RunStore, outcome: RejudgeOutcome) -> None:
        await store.append_records(SAMPLES, self.records(outcome))

    async def finish(self, store: RunStore, outcomes: Sequence[RejudgeOutcome]) -> None:
        await store.rewrite_records(SAMPLES, [r for o in outcomes for r in self.records(o)])

    def progress_fields(self, outcome: RejudgeOutcome) -> dict[str, Any]:
        return {"accepted": outcome.accepted}

    def kept(self, outcome: RejudgeOutcome) -> int:
        return len(outcome.samples)

    def item_summary(self, outcome: RejudgeOutcome) -> dict[str, Any]:
        return {
            "candidates": len(outcome.item.candidates),
            "accepted": outcome.accepted,
            "kept": len(outcome.samples),
        }

    def manifest_fields(self, outcomes: Sequence[RejudgeOutcome], total: int, totals: dict[str, Any]) -> dict:
        return {
            "source_run": self.source,
            "judge": self._context.judge.spec,
            "generator": self.generator,
            "counts": {
                "seeds": total,
                "candidates": sum(len(o.item.candidates) for o in outcomes),
                "accepted": sum(o.accepted for o in outcomes),
                "samples": sum(len(o.samples) for o in outcomes),
                "seeds_with_samples": sum(1 for o in outcomes if o.samples),
                # Re-judging never asks the generator: only the judge's calls are made.
                "generator_calls": 0,
            },
        }

    async def close(self) -> None:
        await asyncio.gather(self._context.judge.aclose(), return_exceptions=True)
