"""SQLite files that only cache what a run records elsewhere (the call ledger, the checkpoints).

samples.jsonl and progress.jsonl say which seeds are finished and what they kept; the ledger saves
asking a provider again and the checkpoints save redoing a seed's finished steps. A damaged cache
therefore costs time, not results: it is set aside (renamed, kept for a post-mortem) with a one-line
warning, and the run goes on with a fresh one instead of crashing on every resume.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

Warn = Callable[[str], None]
# The main file and what SQLite keeps beside it in WAL mode; they belong together.
_COMPANIONS = ("", "-wal", "-shm")


def warn_on_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def damage(connection: sqlite3.Connection) -> str | None:
    """What is wrong with the database behind `connection`, or None when it reads as sound.

    `quick_check` reads every page (it skips only the index-content cross-check), so damage is
    found when the file is opened, not by whichever call first touches a bad page mid-run.
    """
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed"
        return str(exc)
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    return problems[0] if problems else None


def set_aside(path: Path) -> Path:
    """Rename `path` (and its WAL files) to `<name>.damaged-<UTC time>`; returns the new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in _COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(target.with_name(target.name + suffix))
    return target


def connect_cache(path: Path, *, consequence: str, warn: Warn, **options: Any) -> sqlite3.Connection:
    """A connection to the cache at `path`; a damaged one is set aside first and a new one begun.

    `consequence` finishes the warning: what the run does without what the damaged file held.
    """
    try:
        connection = sqlite3.connect(path, **options)
        problem = damage(connection)
    except sqlite3.DatabaseError as exc:  # not even openable (a directory, no permission)
        connection, problem = None, str(exc)
    if problem is None:
        return connection  # type: ignore[return-value]
    if connection is not None:
        connection.close()
    moved = set_aside(path)
    warn(f"{path} is damaged ({problem}); set aside as {moved.name}, {consequence}")
    return sqlite3.connect(path, **options)
