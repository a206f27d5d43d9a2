"""Re-judging a finished run: another judge or threshold over its stored candidates, no generator calls.

Only the candidates the first run judged are re-scored: a paraphrase the first judge rejected was
never substituted, so a laxer judge can keep that paraphrase but cannot conjure its substitutions.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.judge import Judge
from agents.selector import ScoredCandidate, select_samples
from graphs.runner import now_iso, package_versions, sample_records
from storage.records import SampleRecord, Seed
from storage.run_store import RunStore


async def rejudge_run(
    seeds: Sequence[Seed],
    candidates: list[dict[str, Any]],
    *,
    judge: Judge,
    m: int,
    generator: str,
    source: Path,
    store: RunStore,
    settings: dict[str, Any],
) -> dict[str, Any]:
    started = now_iso()
    by_seed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for candidate in candidates:
        by_seed[str(candidate["seed_id"])].append(candidate)
    records: list[SampleRecord] = []
    per_seed: dict[str, dict[str, int]] = {}
    try:
        # Seeds are judged concurrently; an API judge's own limits (the shared gate) pace them.
        all_verdicts = await asyncio.gather(
            *(judge.judge(seed.q_content, [c["text"] for c in by_seed.get(seed.q_id, [])]) for seed in seeds)
        )
    finally:
        await judge.aclose()
    for seed, verdicts in zip(seeds, all_verdicts, strict=True):
        pool = by_seed.get(seed.q_id, [])
        accepted = [
            ScoredCandidate(text=c["text"], stage=c["stage"], base=c["base"], similarity=v.score)
            for c, v in zip(pool, verdicts, strict=True)
            if v.accepted
        ]
        chosen = select_samples(accepted, seed.q_content, m)
        per_seed[seed.q_id] = {"candidates": len(pool), "accepted": len(accepted), "kept": len(chosen)}
        records.extend(sample_records(seed, chosen, generator, judge.spec))
    await store.rewrite_samples(records)
    manifest = {
        "command": "rejudge",
        "status": "completed",
        "source_run": str(source),
        "started_at": started,
        "finished_at": now_iso(),
        "config": settings,
        "judge": judge.spec,
        "generator": generator,
        "packages": package_versions(),
        "counts": {
            "seeds": len(seeds),
            "candidates": sum(s["candidates"] for s in per_seed.values()),
            "accepted": sum(s["accepted"] for s in per_seed.values()),
            "samples": len(records),
            "seeds_with_samples": sum(1 for s in per_seed.values() if s["kept"]),
            "generator_calls": 0,
        },
        "seeds": per_seed,
    }
    await store.write_manifest(manifest)
    return manifest
