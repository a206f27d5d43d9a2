"""A run directory: result files (JSONL) appended an item at a time, `manifest.json` replaced atomically."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import aiofiles
import orjson
from pydantic import BaseModel

SAMPLES = "samples.jsonl"
MANIFEST = "manifest.json"
PROGRESS = "progress.jsonl"
CANDIDATES = "candidates.jsonl"
LOCK = ".lock"
LEDGER = "ledger.sqlite"  # storage.ledger
CHECKPOINTS = "checkpoints.sqlite"  # storage.checkpoints
# Files only a run directory (augment, rejudge, culturepark) holds (samples.jsonl alone is any tool's).
RUN_MARKERS = (MANIFEST, PROGRESS, CANDIDATES, LEDGER, CHECKPOINTS)

M = TypeVar("M", bound=BaseModel)


class RunDirError(ValueError):
    pass


def run_marker(path: Path) -> str | None:
    """The file that makes `path` a run directory, or None when it is not one."""
    return next((name for name in RUN_MARKERS if (path / name).exists()), None)


def check_new_run_dir(path: Path) -> None:
    """Refuse a run directory that already holds something: a run is never written over."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} exists and is not a directory")
    try:
        holds_files = path.is_dir() and any(path.iterdir())
    except OSError as exc:
        raise RunDirError(f"--out {path} cannot be read ({exc.strerror})") from None
    if holds_files:
        raise RunDirError(f"--out {path} already holds files; choose a new run directory")


def check_writable(path: Path) -> None:
    """Create (and remove) a file in `path`: a run that could not write its results (a read-only
    file system, a directory that takes no new files) stops here in one line, not mid-run."""
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise RunDirError(f"run directory {path} is not writable ({exc.strerror})") from None


def prepare_run_dir(path: Path) -> Path:
    """Create the new run directory `path` and make sure it takes files."""
    check_new_run_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # read-only file system, no permission, a file where a folder should be
        raise RunDirError(f"--out {path}: cannot create the run directory ({exc.strerror})") from None
    check_writable(path)
    return path


def lock_run_dir(path: Path):
    """Hold an exclusive lock on the run directory for this process's lifetime (released on exit,
    even after kill -9), so a second process cannot write into the same run. A resumed run's
    directory is checked to take files first: its lock file may exist when nothing else can be made.
    """
    import fcntl

    check_writable(path)
    try:
        handle = (path / LOCK).open("a+")
    except OSError as exc:
        raise RunDirError(f"run directory {path} is not writable ({exc.strerror})") from None
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


def _replace_now(path: Path, text: str) -> None:
    """Write beside the target, sync, rename: readers see the old file or the new one, never half."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


async def _replace(path: Path, text: str) -> None:
    await asyncio.to_thread(_replace_now, path, text)


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


def _record_line(record: BaseModel | dict) -> str:
    if isinstance(record, BaseModel):
        return json.dumps(record.model_dump(mode="json"), ensure_ascii=False) + "\n"
    return json.dumps(record, ensure_ascii=False) + "\n"


def read_manifest(path: Path) -> dict | None:
    """The run's manifest, or None where there is none or it cannot be read as a JSON object."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.samples_path = root / SAMPLES
        self.manifest_path = root / MANIFEST
        self.progress_path = root / PROGRESS
        self.candidates_path = root / CANDIDATES
        # Manifest writes run in worker threads and go on when the task awaiting them is cancelled
        # (an interrupt during a snapshot); numbered, the later manifest is never overwritten.
        self._manifest_lock = threading.Lock()
        self._manifest_numbers = itertools.count(1)
        self._manifest_written = 0

    def path(self, name: str) -> Path:
        return self.root / name

    async def append_records(self, name: str, records: Sequence[BaseModel | dict]) -> None:
        """Append one item's records to the JSONL file `name` in a single write, so the lines are
        whole after a crash."""
        if records:
            await _append(self.path(name), "".join(_record_line(r) for r in records))

    def read_records(self, name: str, model: type[M]) -> list[M]:
        """The records of `name` that parse as `model`, in file order; torn lines are skipped."""
        kept: list[M] = []
        for raw in _json_lines(self.path(name)):
            try:
                kept.append(model.model_validate(raw))
            except ValueError:
                continue
        return kept

    async def rewrite_records(self, name: str, records: Iterable[BaseModel | dict]) -> None:
        """Replace the JSONL file `name` by `records` through a temp file and rename."""
        await _replace(self.path(name), "".join(_record_line(r) for r in records))

    def read_candidates(self) -> list[dict]:
        needed = {"seed_id", "text", "stage", "base"}
        return [record for record in _json_lines(self.candidates_path) if needed <= record.keys()]

    async def append_progress(self, record: dict) -> None:
        """Mark an item finished; written after its records, so a marked item's records are complete."""
        await _append(self.progress_path, _json_line(record))

    def read_progress(self) -> dict[str, dict]:
        """The last progress record of every item; a torn last line (killed mid-write) is ignored.
        Runs made before items were generic name them by `seed_id`."""
        progress = {}
        for record in _json_lines(self.progress_path):
            item = record.get("item", record.get("seed_id"))
            if item is not None:
                progress[str(item)] = record
        return progress

    def read_manifest(self) -> dict | None:
        return read_manifest(self.manifest_path)

    async def write_manifest(self, manifest: dict) -> None:
        number = next(self._manifest_numbers)
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._write_manifest_numbered, number, text)

    def _write_manifest_numbered(self, number: int, text: str) -> None:
        with self._manifest_lock:
            if number < self._manifest_written:
                return
            _replace_now(self.manifest_path, text)
            self._manifest_written = number
