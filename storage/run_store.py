"""A run directory: `samples.jsonl` appended a seed at a time, `manifest.json` replaced atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import aiofiles
import aiofiles.os
import orjson

from storage.records import SampleRecord

SAMPLES = "samples.jsonl"
MANIFEST = "manifest.json"
PROGRESS = "progress.jsonl"
CANDIDATES = "candidates.jsonl"
LOCK = ".lock"


class RunDirError(ValueError):
    pass


def check_new_run_dir(path: Path) -> None:
    """Refuse a run directory that already holds something: a run is never written over."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        raise RunDirError(f"--out {path} already holds files; choose a new run directory")


def prepare_run_dir(path: Path) -> Path:
    check_new_run_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def lock_run_dir(path: Path):
    """Hold an exclusive lock on the run directory for this process's lifetime (released on exit,
    even after kill -9), so a second process cannot write into the same run."""
    import fcntl

    handle = (path / LOCK).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunDirError(f"run directory {path} is in use by another process") from None
    return handle


async def _append(path: Path, payload: str) -> None:
    """One write per call, so what a kill leaves behind is whole lines plus at most one torn one."""
    async with aiofiles.open(path, "a", encoding="utf-8") as handle:
        await handle.write(payload)
        await handle.flush()


async def _replace(path: Path, text: str) -> None:
    """Write beside the target, sync, rename: readers see the old file or the new one, never half."""
    temporary = path.with_name(path.name + ".tmp")
    async with aiofiles.open(temporary, "w", encoding="utf-8") as handle:
        await handle.write(text)
        await handle.flush()
        os.fsync(handle.fileno())
    await aiofiles.os.replace(temporary, path)


def _json_line(record: dict) -> str:
    return orjson.dumps(record).decode() + "\n"


def _json_lines(path: Path) -> Iterator[dict]:
    """The JSON objects of a JSONL file in order, skipping lines a kill tore; none if it is missing."""
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            yield record


def _dumps(record: SampleRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False)


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.samples_path = root / SAMPLES
        self.manifest_path = root / MANIFEST
        self.progress_path = root / PROGRESS
        self.candidates_path = root / CANDIDATES

    async def append_samples(self, records: Sequence[SampleRecord]) -> None:
        """Append one seed's records in a single write, so lines are whole after a crash."""
        if not records:
            return
        await _append(self.samples_path, "".join(_dumps(r) + "\n" for r in records))

    async def append_candidates(self, seed_id: str, candidates: Sequence[dict]) -> None:
        """Every judged candidate of a seed, for `rejudge`; one write per seed, like the samples."""
        if not candidates:
            return
        await _append(self.candidates_path, "".join(_json_line({"seed_id": seed_id, **c}) for c in candidates))

    def read_candidates(self) -> list[dict]:
        needed = {"seed_id", "text", "stage", "base"}
        return [record for record in _json_lines(self.candidates_path) if needed <= record.keys()]

    async def keep_candidates_of(self, seed_ids: set[str]) -> None:
        """Drop candidates of seeds that did not finish (they are made again on resume)."""
        kept = [c for c in self.read_candidates() if c["seed_id"] in seed_ids]
        await _replace(self.candidates_path, "".join(_json_line(c) for c in kept))

    async def append_progress(self, record: dict) -> None:
        """Mark a seed finished; written after its samples, so a marked seed's samples are complete."""
        await _append(self.progress_path, _json_line(record))

    def read_progress(self) -> dict[str, dict]:
        """The last progress record of every seed; a torn last line (killed mid-write) is ignored."""
        return {str(r["seed_id"]): r for r in _json_lines(self.progress_path) if "seed_id" in r}

    def read_complete_samples(self, seed_ids: set[str]) -> list[SampleRecord]:
        """Samples of the given seeds, skipping torn lines and samples of unfinished seeds."""
        if not self.samples_path.exists():
            return []
        kept: list[SampleRecord] = []
        for line in self.samples_path.read_text(encoding="utf-8").splitlines():
            try:
                record = SampleRecord.model_validate_json(line)
            except ValueError:
                continue
            if record.seed_id in seed_ids:
                kept.append(record)
        return kept

    async def rewrite_samples(self, records: Iterable[SampleRecord]) -> None:
        """Replace samples.jsonl by the given records (seed order) through a temp file and rename."""
        await _replace(self.samples_path, "".join(_dumps(r) + "\n" for r in records))

    async def write_manifest(self, manifest: dict) -> None:
        await _replace(self.manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
