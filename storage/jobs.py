"""The server's job table: one SQLite file beside the run directories (`RUNS_DIR/jobs.sqlite`).

A row is what the server must remember across a crash to carry on: the command, its validated
settings (no keys: those come from the server's environment), where the run writes, and where the
job stands. The run itself (samples, ledger, manifest) lives in its run directory, as for the command
line; this table only says which runs are the server's and which of them to resume at start.

SQLite in WAL mode with synchronous=FULL: a status written before a crash is there after it. Writes
are a few per job (created, started, ended), so a lock around one connection is enough.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

JOBS_DB = "jobs.sqlite"

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
CANCELLED, FAILED = "cancelled", "failed"
COMPLETED, COMPLETED_WITH_FAILURES = "completed", "completed_with_failures"
# A job in one of these was not finished when the server stopped: the next server start resumes it.
UNFINISHED = (QUEUED, RUNNING, CANCELLING)
FINISHED = (COMPLETED, COMPLETED_WITH_FAILURES, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL,
    out TEXT NOT NULL,
    error TEXT,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT,
    starts INTEGER NOT NULL DEFAULT 0
)
"""


class JobTableError(RuntimeError):
    """The job table cannot be opened or read; the message names the file."""


def new_job_id() -> str:
    """12 hex digits: short enough to type, random enough never to collide in one runs directory."""
    return uuid.uuid4().hex[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class JobRecord:
    id: str
    command: str
    settings: dict[str, Any]  # the command's settings as JSON values (paths as strings)
    status: str
    out: Path
    error: str | None
    created: str
    started: str | None
    finished: str | None
    starts: int  # how many times a server started (or resumed) it


class JobTable:
    """Jobs by id, persisted in `runs_dir/jobs.sqlite`."""

    def __init__(self, runs_dir: Path) -> None:
        self.path = runs_dir / JOBS_DB
        self._lock = threading.Lock()
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JobTableError(f"job table {self.path}: cannot be opened ({exc})") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, job_id: str, command: str, settings: dict[str, Any], out: Path) -> JobRecord:
        """A new queued job writing into the run directory `out`."""
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, command, settings, status, out, created) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, command, json.dumps(settings, sort_keys=True), QUEUED, str(out), _now()),
            )
        record = self.get(job_id)
        assert record is not None
        return record

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, command, settings, status, out, error, created, started, finished, starts"
                " FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        return _record(row) if row else None

    def all(self) -> list[JobRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, command, settings, status, out, error, created, started, finished, starts"
                " FROM jobs ORDER BY created, rowid"
            ).fetchall()
        return [_record(row) for row in rows]

    def unfinished(self) -> list[JobRecord]:
        return [job for job in self.all() if job.status in UNFINISHED]

    def started(self, job_id: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = NULL, started = ?, finished = NULL, starts = starts + 1"
                " WHERE id = ?",
                (RUNNING, _now(), job_id),
            )

    def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        finished = _now() if status in FINISHED else None
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, finished = ? WHERE id = ?",
                (status, error, finished, job_id),
            )


def _record(row: tuple) -> JobRecord:
    job_id, command, settings, status, out, error, created, started, finished, starts = row
    return JobRecord(
        id=job_id,
        command=command,
        settings=json.loads(settings),
        status=status,
        out=Path(out),
        error=error,
        created=created,
        started=started,
        finished=finished,
        starts=starts,
    )
