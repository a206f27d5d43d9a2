"""The ledger of LLM calls: every answer a provider gave, keyed by what was asked.

A resumed or repeated run asks the same questions (same spec, messages, parameters and attempt
index, local sampling seeds included), so it replays completed calls from disk instead of paying for
them again. Malformed answers are stored too: a replay then walks the same retry sequence.
SQLite (WAL) commits each answer on its own, so a killed process loses at most the call in flight.
Embedding requests to an API are kept too (as float32 matrices): they are cheap, but still paid.
The ledger is a cache: a damaged file is set aside when opened, and one that fails mid-run is no
longer used; either way the run goes on and asks the provider instead.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storage.run_store import LEDGER as LEDGER  # re-exported: the file's name
from storage.sqlite_cache import Warn, connect_cache, warn_on_stderr

_WITHOUT_IT = "answers it held will be asked again"


@dataclass(frozen=True)
class LedgerEntry:
    text: str
    input_tokens: int
    output_tokens: int


def call_key(spec: str, messages: list[dict[str, str]], params: dict[str, Any], attempt: int) -> str:
    payload = json.dumps(
        {"spec": spec, "messages": messages, "params": params, "attempt": attempt},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def embedding_key(spec: str, texts: list[str]) -> str:
    payload = json.dumps({"spec": spec, "embed": texts}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CallLedger:
    """Opened on first use, so it can be handed to the models before the run directory exists."""

    def __init__(self, path: Path, *, warn: Warn = warn_on_stderr) -> None:
        self.path = path
        self._warn = warn
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._failed = False  # an error mid-run turned the ledger off for the rest of the process
        self.hits = 0
        self.misses = 0
        self.embedding_hits = 0
        self.embedding_misses = 0

    def open(self) -> None:
        """Open the file now (checking it, setting a damaged one aside) rather than on first use."""
        with self._lock:
            _ = self._db

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = connect_cache(
                self.path,
                consequence=_WITHOUT_IT,
                warn=self._warn,
                check_same_thread=False,
                isolation_level=None,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, spec TEXT, step TEXT, text TEXT,"
                " input_tokens INTEGER, output_tokens INTEGER, created REAL)"
            )
            connection.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, spec TEXT, rows INTEGER,"
                " dims INTEGER, vectors BLOB, created REAL)"
            )
            self._connection = connection
        return self._connection

    def _give_up(self, exc: sqlite3.Error) -> None:
        """Stop using a ledger that failed mid-run (disk full, damaged under us): calls go to the
        provider, which is what the ledger saves, never what the results depend on."""
        self._failed = True
        self._warn(f"{self.path} failed ({exc}); not used for the rest of this run, {_WITHOUT_IT}")

    def _read_one(self, statement: str, key: str) -> tuple | None:
        """One row, or None when there is none or the ledger has failed (the twin of `_write`)."""
        if self._failed:
            return None
        try:
            return self._db.execute(statement, (key,)).fetchone()
        except sqlite3.Error as exc:
            self._give_up(exc)
            return None

    def get(self, key: str) -> LedgerEntry | None:
        with self._lock:
            row = self._read_one("SELECT text, input_tokens, output_tokens FROM calls WHERE key = ?", key)
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            return LedgerEntry(*row)

    def _write(self, statement: str, values: tuple) -> None:
        with self._lock:
            if self._failed:
                return
            try:
                self._db.execute(statement, values)
            except sqlite3.Error as exc:
                self._give_up(exc)

    def put(self, key: str, *, spec: str, step: str, entry: LedgerEntry) -> None:
        self._write(
            "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, spec, step, entry.text, entry.input_tokens, entry.output_tokens, time.time()),
        )

    def get_vectors(self, key: str) -> np.ndarray | None:
        with self._lock:
            row = self._read_one("SELECT rows, dims, vectors FROM embeddings WHERE key = ?", key)
            if row is None:
                self.embedding_misses += 1
                return None
            self.embedding_hits += 1
        rows, dims, blob = row
        return np.frombuffer(blob, dtype="<f4").reshape(rows, dims).copy()

    def put_vectors(self, key: str, *, spec: str, vectors: np.ndarray) -> None:
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        self._write(
            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?)",
            (key, spec, matrix.shape[0], matrix.shape[1], matrix.tobytes(), time.time()),
        )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
