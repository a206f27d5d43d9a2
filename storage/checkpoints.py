"""LangGraph checkpoints of an augment run: one thread per seed, in the run directory.

After every completed graph step the seed's state is committed to SQLite, so a seed interrupted (or
failed) mid-graph continues from its last completed step instead of starting over; calls made inside
the unfinished step are replayed from the call ledger. Only the run's own state types may be read
back (LangGraph's msgpack allowlist), so a tampered checkpoint file cannot construct arbitrary objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

CHECKPOINTS = "checkpoints.sqlite"


@asynccontextmanager
async def open_checkpoints(path: Path, state_types: Iterable[type]) -> AsyncIterator[AsyncSqliteSaver]:
    """A checkpointer on `path` (created when missing) that revives only `state_types`."""
    connection = await aiosqlite.connect(path)
    # The saver's setup switches to WAL; with synchronous=NORMAL a commit survives the process being
    # killed (what resuming needs) without an fsync per graph step; an OS crash may lose the last
    # steps, which are then redone.
    await connection.execute("PRAGMA synchronous=NORMAL")
    try:
        saver = AsyncSqliteSaver(
            connection, serde=JsonPlusSerializer(allowed_msgpack_modules=list(state_types))
        )
        await saver.setup()
        yield saver
    finally:
        await connection.close()
