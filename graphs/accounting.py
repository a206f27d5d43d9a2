"""What a run cost, across every process that worked on it.

A run may take several processes: one is interrupted (Ctrl-C, SIGTERM, a kill, a fatal error) and
`--resume` or a re-run with the same `--out` goes on. Each process appends a segment to the
manifest (when it started and ended, how it ended, its calls and tokens by step, its ledger hits)
and the run's totals are the sums over the segments, so no process's work drops out of the record.

A process that dies without a word (kill -9, power loss) leaves the segment of its last snapshot
(the runner writes one every few seconds) with status `running`; the next process marks it `aborted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

RUNNING = "running"
ABORTED = "aborted"
# Usage counters that add up over processes (seconds too: time spent waiting on each step).
_ADDITIVE = (
    "calls",
    "replayed",
    "attempts",
    "retries",
    "failures",
    "input_tokens",
    "output_tokens",
    "seconds",
)
_LEDGER = ("hits", "misses", "embedding_hits", "embedding_misses")


def llm_calls(usage_by_step: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
    """(calls the providers answered, calls answered from the ledger) over the non-embedding steps."""
    chat = [usage for step, usage in usage_by_step.items() if step != "embed"]
    replayed = sum(int(u.get("replayed", 0)) for u in chat)
    return sum(int(u.get("calls", 0)) for u in chat) - replayed, replayed


def _legacy_segment(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The one process a manifest written before segments existed describes."""
    usage = manifest.get("usage_by_step") or {}
    answered, replayed = llm_calls(usage)
    return {
        "started_at": manifest.get("started_at"),
        "ended_at": manifest.get("finished_at"),
        "updated_at": manifest.get("finished_at") or manifest.get("started_at"),
        "status": manifest.get("status", RUNNING),
        "duration_s": manifest.get("duration_s", 0.0),
        "items_finished": (manifest.get("counts") or {}).get("seeds_done", 0),
        "llm_calls": answered,
        "llm_calls_replayed": replayed,
        "usage_by_step": usage,
        "ledger": manifest.get("ledger"),
    }


def earlier_segments(manifest: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The segments of the processes that worked on the run before this one."""
    if not manifest:
        return []
    recorded = manifest.get("segments")
    segments = [_legacy_segment(manifest)] if recorded is None else recorded
    closed = []
    for segment in segments:
        if not isinstance(segment, dict):
            continue
        if segment.get("status") == RUNNING:  # its process died before it could say how it ended
            segment = {**segment, "status": ABORTED, "ended_at": segment.get("updated_at")}
        closed.append(segment)
    return closed


def sum_usage(usages: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per-step usage added up field by field."""
    total: dict[str, dict[str, Any]] = {}
    for usage in usages:
        for step, counters in usage.items():
            into = total.setdefault(step, dict.fromkeys(_ADDITIVE, 0))
            for name in _ADDITIVE:
                into[name] += counters.get(name, 0)
    for counters in total.values():
        counters["seconds"] = round(counters["seconds"], 3)
    return dict(sorted(total.items()))


def sum_ledger(ledgers: Iterable[Mapping[str, int] | None]) -> dict[str, int] | None:
    present = [ledger for ledger in ledgers if ledger]
    if not present:
        return None
    return {name: sum(int(ledger.get(name, 0)) for ledger in present) for name in _LEDGER}


def run_totals(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's totals: sums over its segments."""
    return {
        "started_at": segments[0]["started_at"] if segments else None,
        "duration_s": round(sum(float(s.get("duration_s") or 0.0) for s in segments), 2),
        "llm_calls": sum(int(s.get("llm_calls", 0)) for s in segments),
        "llm_calls_replayed": sum(int(s.get("llm_calls_replayed", 0)) for s in segments),
        "usage_by_step": sum_usage(s.get("usage_by_step") or {} for s in segments),
        "ledger": sum_ledger(s.get("ledger") for s in segments),
    }
