"""LangGraph checkpoints of an augment run: one thread per seed, in the run directory.

After every completed graph step the seed's state is committed to SQLite, so a seed interrupted (or
failed) mid-graph continues from its last completed step instead of starting over; calls made inside
the unfinished step are replayed from the call ledger. Only the run's own state types may be read
back (LangGraph's msgpack allowlist), so a tampered checkpoint file cannot construct arbitrary objects.
Lists of the run's candidate records are stored as plain rows (`RowsSerializer`). The file is a cache
of work done: a damaged one is set aside when opened and the unfinished seeds start over.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver

from storage.run_store import CHECKPOINTS as CHECKPOINTS  # re-exported: the file's name
from storage.sqlite_cache import Warn, connect_cache, warn_on_stderr

_ROWS = "__rows__"


class RowsSerializer(JsonPlusSerializer):
    """LangGraph's serializer, storing lists of the given NamedTuple types as plain rows.

    LangGraph packs every NamedTuple as a nested message of its own carrying module, class and
    field names, through a Python callback; every checkpoint of a seed holds all of its candidates,
    so that was most of the checkpoint cost (16.5 KB per checkpoint on the benchmark). As rows they
    pack in one native pass, and come back as the same NamedTuples.
    """

    def __init__(self, row_types: Iterable[type], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._row_types = {kind.__name__: kind for kind in row_types}

    def _pack(self, value: Any) -> Any:
        if isinstance(value, list) and value:
            kind = type(value[0])
            if self._row_types.get(kind.__name__) is kind and all(type(v) is kind for v in value):
                return {_ROWS: kind.__name__, "rows": [list(v) for v in value]}
        return value

    def _unpack(self, value: Any) -> Any:
        if isinstance(value, dict) and value.get(_ROWS) in self._row_types:
            kind = self._row_types[value[_ROWS]]
            return [kind(*row) for row in value["rows"]]
        return value

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        # A checkpoint holds the channels' values; a pending write holds one channel's value.
        if isinstance(obj, dict) and isinstance(obj.get("channel_values"), dict):
            obj = {**obj, "channel_values": {k: self._pack(v) for k, v in obj["channel_values"].items()}}
        else:
            obj = self._pack(obj)
        return super().dumps_typed(obj)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        obj = super().loads_typed(data)
        if isinstance(obj, dict) and isinstance(obj.get("channel_values"), dict):
            obj["channel_values"] = {k: self._unpack(v) for k, v in obj["channel_values"].items()}
            return obj
        return self._unpack(obj)


class InLoopSqliteSaver(SqliteSaver):
    """LangGraph's `SqliteSaver`, serving the async interface from the event loop's own thread.

    `AsyncSqliteSaver` sends every statement through aiosqlite's worker thread under one lock for
    the whole saver. With 50 seeds checkpointing at 32 calls in flight, a checkpoint write waited
    57 ms on average (p90 158 ms) in that queue, and each seed's end waited on its last writes. A
    commit in WAL mode with synchronous=NORMAL takes ~0.1 ms, so writing inline blocks the loop far
    less than the thread hand-offs cost. Not for slow or networked file systems.
    """

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in self.list(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        return self.get_delta_channel_history(config=config, channels=channels)


@contextmanager
def _connection(path: Path, warn: Warn) -> Iterator[sqlite3.Connection]:
    # The saver guards the connection with its own lock; check_same_thread=False lets a sync
    # caller (a test, a tool) use it from another thread.
    connection = connect_cache(
        path,
        consequence="unfinished seeds start over (their answers come from the call ledger)",
        warn=warn,
        check_same_thread=False,
    )
    with closing(connection):
        # With WAL and synchronous=NORMAL a commit survives the process being killed (what
        # resuming needs) without an fsync per graph step; an OS crash may lose the last steps,
        # which are then redone.
        connection.execute("PRAGMA synchronous=NORMAL")
        yield connection


@asynccontextmanager
async def open_checkpoints(
    path: Path, state_types: Iterable[type], row_types: Iterable[type] = (), *, warn: Warn = warn_on_stderr
) -> AsyncIterator[InLoopSqliteSaver]:
    """A checkpointer on `path` (created when missing, set aside and begun afresh when damaged)
    that revives only `state_types`, storing lists of `row_types` (NamedTuples made of plain
    values) as rows."""
    with _connection(path, warn) as connection:
        serde = RowsSerializer(row_types, allowed_msgpack_modules=list(state_types))
        saver = InLoopSqliteSaver(connection, serde=serde)
        saver.setup()  # switches the file to WAL
        yield saver
