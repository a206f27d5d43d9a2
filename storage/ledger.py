"""The ledger of LLM calls: every answer a provider gave, keyed by what was asked.

A resumed or repeated run asks the same questions (same spec, messages, parameters and attempt
index, local sampling seeds included), so it replays completed calls from disk instead of paying for
them again. Malformed answers are stored too: a replay then walks the same retry sequence.
SQLite (WAL) commits each answer on its own, so a killed process loses at most the call in flight.
Embedding requests to an API are kept too (as float32 matrices): they are cheap, but still paid.
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

LEDGER = "ledger.sqlite"


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

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        self.embedding_hits = 0
        self.embedding_misses = 0

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
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

    def get(self, key: str) -> LedgerEntry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, input_tokens, output_tokens FROM calls WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
            return LedgerEntry(*row)

    def put(self, key: str, *, spec: str, step: str, entry: LedgerEntry) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, spec, step, entry.text, entry.input_tokens, entry.output_tokens, time.time()),
            )

    def get_vectors(self, key: str) -> np.ndarray | None:
        with self._lock:
            row = self._db.execute("SELECT rows, dims, vectors FROM embeddings WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.embedding_misses += 1
                return None
            self.embedding_hits += 1
        rows, dims, blob = row
        return np.frombuffer(blob, dtype="<f4").reshape(rows, dims).copy()

    def put_vectors(self, key: str, *, spec: str, vectors: np.ndarray) -> None:
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        with self._lock:
            self._db.execute(
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
