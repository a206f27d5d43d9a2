"""Jobs of the server: the commands' own runs, started, cancelled and resumed inside one event loop.

A job is a command (`augment`, `rejudge`, `culturepark`, `build-dataset`, `evaluate`) with its own
settings model, validated as the command line validates flags. It runs through the same
`prepare_*` function and the same runner as `python cli.py <command>`, in its own run directory
under the runs directory, so its files, manifest, ledger and `--resume` are the command's.

What the server adds:
- one gate per provider and key (`GateRegistry`) shared by every job, the calls of each job being
  its own tenant of that gate, so the configured limits hold for the server as a whole and free
  slots go round the jobs;
- the job table (storage/jobs.py): a job the server was running when it stopped (a crash, a kill,
  a restart) is resumed when the server starts again, through the same resume path as `--resume`;
- events: each job keeps what happened to it (status changes, finished items) for live readers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agents.providers.endpoints import redact_urls
from agents.providers.resilience import FatalModelError, GateRegistry, call_tenant
from commands.common import PreparedRun, run_prepared
from commands.errors import UserError
from storage.jobs import (
    CANCELLED,
    CANCELLING,
    FAILED,
    FINISHED,
    QUEUED,
    RUNNING,
    JobRecord,
    JobTable,
    JobTableError,
    new_job_id,
)
from storage.run_store import MANIFEST, RunDirError, lock_run_dir

# Settings fields a job may not set: where a job writes is the server's choice (runs_dir/<id>).
SERVER_CHOSEN = ("out",)


@dataclass(frozen=True)
class JobKind:
    """A command the server runs as jobs."""

    command: str
    settings: type[BaseModel]
    # settings, run directory to resume (or None), shared gates -> a run ready to start; None for
    # build-dataset, which calls no model per item and runs as one step (`_build_dataset`).
    prepare: Callable[..., PreparedRun] | None
    # Settings that name another run's directory: a relative one is read inside the runs directory,
    # so a job can name an earlier job's output by its id ({"source": "3f2a9c0d1e4b"}).
    run_dirs: tuple[str, ...] = ()
    # The command's own defaults that depend on other settings (rejudge: the source run's judge,
    # threshold and m); raises UserError naming what is wrong.
    complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def job_kinds() -> dict[str, JobKind]:
    from builders.build import BuildSettings
    from commands.augment import prepare_augment
    from commands.culturepark import prepare_culturepark
    from commands.evaluate import prepare_evaluate
    from commands.rejudge import prepare_rejudge, with_source_defaults
    from graphs.settings import AugmentSettings, CultureParkSettings, EvaluateSettings, RejudgeSettings

    kinds = [
        JobKind("augment", AugmentSettings, prepare_augment),
        JobKind(
            "rejudge",
            RejudgeSettings,
            prepare_rejudge,
            run_dirs=("source",),
            complete=lambda values: with_source_defaults(Path(values.get("source", "")), values),
        ),
        JobKind("culturepark", CultureParkSettings, prepare_culturepark),
        JobKind("build-dataset", BuildSettings, None, run_dirs=("samples", "culturepark")),
        JobKind("evaluate", EvaluateSettings, prepare_evaluate, run_dirs=("validation_of",)),
    ]
    return {kind.command: kind for kind in kinds}


class InvalidJob(ValueError):
    """A job request that cannot run; `loc` is the field's path in the request body."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class JobNotFound(KeyError):
    pass


class JobConflict(RuntimeError):
    """The job is not in a state that allows the request (cancel a finished job, resume a running one)."""


class JobEvents:
    """What happened to one job, for the live event stream. Every event has a sequence number; a
    reader asks for the events after the last number it saw, so one joining late gets the job's
    story from the start, then waits for more.

    The story stays small however many items a job has: a progress event replaces the progress
    event before it when nothing else came in between (an evaluate run of 36,000 answers keeps its
    status changes and one progress line, not 36,000). A reader that keeps up sees every one.
    """

    def __init__(self) -> None:
        self.history: list[tuple[int, str, dict[str, Any]]] = []  # (sequence number, event, data)
        self.last = -1
        self._more = asyncio.Event()
        self.done = 0
        self.failed = 0
        self.total: int | None = None

    def publish(self, event: str, data: dict[str, Any]) -> None:
        self.last += 1
        if event == "progress" and self.history and self.history[-1][1] == "progress":
            self.history.pop()
        self.history.append((self.last, event, data))
        # Wake every reader waiting now; later readers wait on a fresh event.
        more, self._more = self._more, asyncio.Event()
        more.set()

    def after(self, seen: int) -> list[tuple[int, str, dict[str, Any]]]:
        """The events numbered above `seen`, in order."""
        return [entry for entry in self.history if entry[0] > seen]

    async def wait_beyond(self, seen: int) -> None:
        """Return once an event numbered above `seen` exists."""
        while self.last <= seen:
            await self._more.wait()

    def item_done(self, outcome: Any) -> None:
        """The runner's observer: one finished item (restored ones of a resumed run included)."""
        self.done += 1
        self.failed += 1 if getattr(outcome, "failure", None) else 0
        self.publish("progress", {"done": self.done, "failed": self.failed, "total": self.total})


class JobManager:
    """Accepts, runs, cancels and resumes the server's jobs."""

    def __init__(
        self,
        runs_dir: Path,
        gates: GateRegistry,
        *,
        max_jobs: int = 4,
        allowed_base_urls: tuple[str, ...] = (),
    ) -> None:
        self.runs_dir = runs_dir.resolve()
        self.gates = gates
        # The server sends its own provider key to a job's base URL: a job may only name one of these.
        self.allowed_base_urls = {url.rstrip("/") for url in allowed_base_urls}
        self.table = JobTable(self.runs_dir)
        # One server per runs directory: a second would resume the same jobs into the same runs.
        try:
            self._lock = lock_run_dir(self.runs_dir)
        except RunDirError:
            self.table.close()
            raise JobTableError(f"{self.runs_dir} is in use by another server") from None
        self.kinds = job_kinds()
        self.max_jobs = max_jobs
        self._slots: asyncio.Semaphore | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events: dict[str, JobEvents] = {}
        self._cancel_requested: set[str] = set()

    # --- requests ---------------------------------------------------------------------------

    def validate(self, command: Any, args: Any) -> tuple[JobKind, BaseModel]:
        """The command's settings of a request body, or InvalidJob naming the offending field."""
        if not isinstance(command, str) or command not in self.kinds:
            known = ", ".join(self.kinds)
            raise InvalidJob(("command",), f"unknown command {command!r}; the server runs {known}")
        if not isinstance(args, dict):
            raise InvalidJob(("args",), "must be an object of the command's settings")
        kind = self.kinds[command]
        for name in SERVER_CHOSEN:
            if name in args:
                raise InvalidJob(("args", name), f"{name} is chosen by the server (runs_dir/<job id>)")
        values = dict(args)
        for name in kind.run_dirs:
            if isinstance(values.get(name), str) and not Path(values[name]).is_absolute():
                values[name] = str(self.runs_dir / values[name])
        if kind.complete is not None:
            if not isinstance(values.get("source"), str):
                raise InvalidJob(("args", "source"), "required: the run directory (or job id) to work on")
            try:
                values = kind.complete(values)
            except UserError as exc:
                raise InvalidJob(("args", "source"), redact_urls(str(exc))) from None
        try:
            settings = kind.settings.model_validate({**values, "out": str(self.runs_dir / "_validating")})
        except ValidationError as exc:
            problem = exc.errors()[0]
            message = problem["msg"].removeprefix("Value error, ")
            raise InvalidJob(("args", *problem["loc"]), message) from None
        base_url = getattr(settings, "base_url", None)
        if base_url is not None and base_url.rstrip("/") not in self.allowed_base_urls:
            raise InvalidJob(
                ("args", "base_url"),
                "not one the server allows (serve --allow-base-url URL): jobs run with the server's "
                "provider key, which must not be sent to a server a job names",
            )
        return kind, settings

    def submit(self, command: Any, args: Any) -> JobRecord:
        kind, settings = self.validate(command, args)
        job_id = new_job_id()
        out = self.runs_dir / job_id
        settings = settings.model_copy(update={"out": out})
        record = self.table.create(job_id, kind.command, settings.model_dump(mode="json"), out)
        self._launch(record.id)
        return record

    def get(self, job_id: str) -> JobRecord:
        record = self.table.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def events(self, job_id: str) -> JobEvents:
        record = self.get(job_id)
        if job_id not in self._events:  # a job finished before this server started
            events = self._events[job_id] = JobEvents()
            events.publish("status", {"status": record.status})
            if record.status in FINISHED:
                events.publish("end", {"status": record.status, "error": record.error})
        return self._events[job_id]

    async def cancel(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        task = self._tasks.get(job_id)
        if task is None or task.done():
            raise JobConflict(
                f"job {job_id} is {record.status}; only a queued or running job can be cancelled"
            )
        if record.command == "build-dataset":
            raise JobConflict("a build-dataset job runs as one step and cannot be cancelled")
        self._cancel_requested.add(job_id)
        self.table.set_status(job_id, CANCELLING)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), timeout=60)
        return self.get(job_id)

    def resume(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            raise JobConflict(f"job {job_id} is {record.status}; it is already running")
        if record.status not in (CANCELLED, FAILED):
            raise JobConflict(
                f"job {job_id} is {record.status}; only a cancelled or failed job can be resumed"
            )
        self.table.set_status(job_id, QUEUED)
        self._launch(job_id)
        return self.get(job_id)

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Resume every job the last server left unfinished; their ids."""
        self._slots = asyncio.Semaphore(self.max_jobs)
        resumed = []
        for record in self.table.unfinished():
            if record.status == CANCELLING:  # the cancel was asked for but not finished: honour it
                self.table.set_status(record.id, CANCELLED, "cancelled (the server stopped while cancelling)")
                continue
            self.table.set_status(record.id, QUEUED)
            self._launch(record.id)
            resumed.append(record.id)
        return resumed

    async def stop(self) -> None:
        """Stop every running job as a crash would, but cleanly: each manifest says interrupted, and
        the table still says running, so the next start resumes them."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.table.close()
        self._lock.close()

    def _launch(self, job_id: str) -> None:
        self._events[job_id] = JobEvents()
        self._tasks[job_id] = asyncio.get_running_loop().create_task(self._run(job_id), name=f"job {job_id}")

    async def _run(self, job_id: str) -> None:
        events = self._events[job_id]
        events.publish("status", {"status": QUEUED})
        assert self._slots is not None
        status, error = FAILED, None
        try:
            async with self._slots:
                self.table.started(job_id)
                events.publish("status", {"status": RUNNING})
                _log(f"job {job_id} ({self.get(job_id).command}): running")
                with call_tenant(job_id):
                    status = await self._execute(self.get(job_id), events)
        except asyncio.CancelledError:
            if job_id not in self._cancel_requested:  # the server is stopping: resume at next start
                raise
            status, error = CANCELLED, f"cancelled; POST /v1/jobs/{job_id}/resume goes on where it stopped"
        except (UserError, FatalModelError) as exc:
            error = redact_urls(str(exc))
        except Exception as exc:  # a bug or an unexpected library error: the job fails, the server lives
            error = redact_urls(f"{type(exc).__name__}: {exc}")  # logged with the job's end below
        self._cancel_requested.discard(job_id)
        self.table.set_status(job_id, status, error)
        _log(f"job {job_id}: {status}" + (f" ({error})" if error else ""))
        events.publish("end", {"status": status, "error": error})

    async def _execute(self, record: JobRecord, events: JobEvents) -> str:
        kind = self.kinds[record.command]
        if kind.prepare is None:
            return await self._build_dataset(record, kind)
        resume_dir = record.out if (record.out / MANIFEST).exists() else None
        if resume_dir is None:
            _clear_unstarted(record.out)
            settings = kind.settings.model_validate(record.settings)
        else:
            # The same checks as `--resume`: the run's own settings, prompts unchanged since it began.
            from commands.common import resume_settings

            settings = resume_settings(kind.settings, argparse.Namespace(), resume_dir, record.command)
        prepared = await asyncio.to_thread(kind.prepare, settings, resume_dir, shared_gates=self.gates)
        events.total = len(prepared.items)
        report = await run_prepared(prepared, observer=events.item_done, warn=_warn(record.id))
        return report.status

    async def _build_dataset(self, record: JobRecord, kind: JobKind) -> str:
        from agents.providers.factory import ModelServices, create_chat_model
        from builders.build import BuildError, build_dataset

        settings = kind.settings.model_validate({**record.settings, "overwrite": True})

        def create(spec: str) -> Any:
            services = ModelServices(base_url=settings.base_url, shared_gates=self.gates)
            return create_chat_model(spec, services=services, flag="--translate-model")

        try:
            await asyncio.to_thread(build_dataset, settings, model_factory=create, warn=_warn(record.id))
        except BuildError as exc:
            raise UserError(str(exc)) from None
        return "completed"


def _clear_unstarted(out: Path) -> None:
    """A run directory without a manifest never started its run (the server stopped while preparing
    it): what is in it is made again, so it may go."""
    if out.is_dir() and not (out / MANIFEST).exists():
        shutil.rmtree(out)


def _log(line: str) -> None:
    """One line on the server's output per job event worth reading there (never a key: messages are
    redacted before they get here)."""
    print(line, file=sys.stderr, flush=True)


def _warn(job_id: str) -> Callable[[str], None]:
    def warn(message: str) -> None:
        print(f"job {job_id}: warning: {redact_urls(message)}", file=sys.stderr)

    return warn


def job_view(record: JobRecord, events: JobEvents | None) -> dict[str, Any]:
    """A job as the API shows it: no keys (there are none in settings), URLs' credentials hidden."""
    manifest: dict[str, Any] | None = None
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((record.out / MANIFEST).read_text(encoding="utf-8"))
    settings = json.loads(redact_urls(json.dumps(record.settings)))
    view: dict[str, Any] = {
        "id": record.id,
        "command": record.command,
        "status": record.status,
        "error": record.error,
        "args": settings,
        "run_dir": str(record.out),
        "created": record.created,
        "started": record.started,
        "finished": record.finished,
        "starts": record.starts,
    }
    if events is not None:
        view["progress"] = {"done": events.done, "failed": events.failed, "total": events.total}
    if manifest is not None:
        view["manifest"] = json.loads(redact_urls(json.dumps(manifest)))
    return view
