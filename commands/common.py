"""What the run commands share: flags made from their settings models, resuming a run with its own
settings, and driving a job on the runner with the lock, the progress bar, Ctrl-C and SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import signal
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from commands.errors import UserError

T = TypeVar("T")
S = TypeVar("S", bound=BaseModel)


def flag_of(field: str) -> str:
    return "--" + field.replace("_", "-")


def help_of(settings: type[BaseModel], field: str) -> str:
    info = settings.model_fields[field]
    default = info.get_default(call_default_factory=True)
    if default in (None, []):
        return info.description or ""
    shown = " ".join(default) if isinstance(default, list) else default
    return f"{info.description or ''} (default: {shown})"


def _choices(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(v) for v in typing.get_args(annotation)]
    return None


def _value_type(annotation: Any) -> Any:
    """The type of a field, `X | None` read as X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def add_settings_flags(
    parser: argparse.ArgumentParser, settings: type[BaseModel], fields: Sequence[str]
) -> None:
    """One flag per settings field, typed, with the field's description as its help and no default of
    its own (an unset flag leaves the field to the settings model, or to a resumed run)."""
    for name in fields:
        info = settings.model_fields[name]
        kind = _value_type(info.annotation)
        flag, text = flag_of(name), help_of(settings, name)
        if kind is bool:
            if info.default is True:
                parser.add_argument(
                    f"--no-{name.replace('_', '-')}", dest=name, action="store_false", default=None, help=text
                )
            else:
                parser.add_argument(
                    flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text
                )
        elif typing.get_origin(kind) is list:
            # Repeatable: model specs (--judge), directories (--answers-dir).
            element = typing.get_args(kind)[0]
            convert, metavar = (Path, "DIR") if element is Path else (str, "SPEC")
            parser.add_argument(flag, dest=name, action="append", type=convert, metavar=metavar, help=text)
        elif _choices(kind):
            parser.add_argument(flag, dest=name, choices=_choices(kind), help=text)
        else:
            convert = {int: int, float: float, Path: Path}.get(kind, str)
            parser.add_argument(flag, dest=name, type=convert, help=text)


def add_run_flags(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help=f"Continue an interrupted {command} run in DIR with its own settings: finished items are kept, "
        "answers already received are replayed from its ledger. Re-running with the same --out does the same.",
    )
    p.add_argument(
        "--quiet", action="store_true", help="No progress bar or summary (errors are still printed)."
    )


def explicit_flags(args: argparse.Namespace, settings: type[BaseModel]) -> dict[str, Any]:
    """The settings the user gave on the command line."""
    return {
        name: getattr(args, name) for name in settings.model_fields if getattr(args, name, None) is not None
    }


def validated(settings: type[S], values: dict[str, Any]) -> S:
    """`settings` of `values`; the first invalid one is a one-line error naming its flag."""
    try:
        return settings(**values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else "settings"
        message = problem["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]  # "Input should be ..." reads on after the flag
        raise UserError(f"{flag_of(field)}: {message} (got {values.get(field)!r})") from None


def warn(message: str) -> None:
    """A problem the command recovers from: one line on stderr."""
    from agents.providers.endpoints import redact_urls

    print(f"warning: {redact_urls(message)}", file=sys.stderr)


def run_dir_to_read(flag: str, path: Path) -> None:
    """Refuse, in one line, a path given as an existing run directory that is not a directory."""
    if not path.exists():
        raise UserError(f"{flag} {path} does not exist")
    if not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a run directory")


def read_run_manifest(flag: str, run_dir: Path, command: str) -> dict[str, Any]:
    """The manifest of an existing run of `command`, or a one-line error saying what is wrong."""
    from storage.run_store import MANIFEST

    run_dir_to_read(flag, run_dir)
    path = run_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{flag} {run_dir}: no {MANIFEST} there, so no {command} run") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag}: {path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{flag}: {path} is not a readable {command} manifest ({type(exc).__name__})"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise UserError(f"{flag}: {path} is not a readable {command} manifest (no config)")
    if manifest.get("command", command) != command:
        raise UserError(f"{flag} {run_dir} is a {manifest.get('command')} run, not a {command} run")
    return manifest


def stored_base_url(stored: str | None, given: str | None, where: str) -> str | None:
    """The base URL to use again: a stored one had its credentials replaced by ***, so it is only
    usable as it is when it had none."""
    from agents.providers.endpoints import has_credentials

    if given is None and has_credentials(stored):
        raise UserError(
            f"{where}: the run's base URL {stored} had credentials, which are never stored; give --base-url again"
        )
    return given or stored


def run_dir_to_resume(args: argparse.Namespace) -> Path | None:
    """The run to continue: --resume DIR, or an --out that already holds a run (a re-run goes on)."""
    from storage.run_store import MANIFEST

    resume_dir = args.resume
    if resume_dir is None and args.out is not None and (args.out / MANIFEST).exists():
        resume_dir = args.out
    if resume_dir is not None and args.out is not None and args.out != resume_dir:
        raise UserError(f"--resume {resume_dir} and --out {args.out} name different runs")
    return resume_dir


def resume_settings(settings: type[S], args: argparse.Namespace, run_dir: Path, command: str) -> S:
    """The interrupted run's own settings; flags may change only how hard providers are pushed."""
    import prompts

    manifest = read_run_manifest("--resume", run_dir, command)
    try:
        stored = settings(**manifest["config"])
    except (TypeError, ValidationError) as exc:
        raise UserError(
            f"--resume: {run_dir / 'manifest.json'} is not a readable {command} manifest ({type(exc).__name__})"
        ) from None
    given = explicit_flags(args, settings)
    given.pop("out", None)
    given["base_url"] = stored_base_url(
        getattr(stored, "base_url", None), given.get("base_url"), f"--resume {run_dir}"
    )
    # Compared after validation, so a flag given in another form (a list of dicts for models, 1 for
    # 1.0) that means the same setting is no change.
    resumed = validated(settings, {**stored.model_dump(), **given, "out": run_dir})
    for field in getattr(settings, "RESULT_FIELDS", ()):
        if field in given and getattr(resumed, field) != getattr(stored, field):
            raise UserError(
                f"--resume {run_dir}: {flag_of(field)} {given[field]!r} differs from the run's {getattr(stored, field)!r};"
                " that would change the results, so start a new run with another --out"
            )
    for name, info in (manifest.get("prompts") or {}).items():
        try:
            current = prompts.template(name).sha256
        except prompts.PromptError:
            current = None
        if current != (info or {}).get("sha256"):
            raise UserError(
                f"--resume {run_dir}: prompt {name} changed since the run started; start a new run"
            )
    # The flags that may change (--rpm, --timeout, ...) had the same checks as a new run's.
    return resumed


def settings_to_run(settings: type[S], args: argparse.Namespace, command: str) -> tuple[S, Path | None]:
    """(settings, the run directory being resumed or None): a resumed run's own settings, else the flags'."""
    resume_dir = run_dir_to_resume(args)
    if resume_dir is not None:
        return resume_settings(settings, args, resume_dir, command), resume_dir
    return validated(settings, explicit_flags(args, settings)), None


def run_services(settings: Any, out: Path, shared_gates: Any = None) -> Any:
    """The models' shared services for a run in `out`: the settings' limits, base URL, and the run's
    call ledger (opened when the run starts); `shared_gates` are the server's, when a server runs it."""
    from agents.providers.factory import ModelServices
    from storage.ledger import LEDGER, CallLedger

    return ModelServices(
        limits=settings.limits(),
        base_url=settings.base_url,
        ledger=CallLedger(out / LEDGER, warn=warn),
        shared_gates=shared_gates,
    )


def check_prompts(names: Sequence[str]) -> None:
    """A broken template fails here, before any model is called or a run directory made."""
    import prompts

    try:
        for name in names:
            prompts.template(name)
    except prompts.PromptError as exc:
        raise UserError(str(exc)) from None


def default_out() -> Path:
    return Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def remove_if_empty(path: Path) -> None:
    """Remove a directory this command made and then wrote nothing into."""
    with contextlib.suppress(OSError):  # not empty (or already gone): leave it
        path.rmdir()


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def stoppable(run: Coroutine[Any, Any, T]) -> T:
    """Await `run`; a SIGTERM cancels it the way asyncio handles Ctrl-C, then ends as KeyboardInterrupt.

    Outside the event loop SIGTERM raises KeyboardInterrupt directly. Inside it, an exception raised
    by a signal handler lands at an arbitrary point of the loop and can drop a task's wake-up: one
    SIGTERM'd run hung for good in asyncio's shutdown, waiting on a task whose future had finished.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await run
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def new_run_dir(out: Path) -> None:
    """Refuse an --out that already holds files, before any model is loaded."""
    from storage.run_store import RunDirError, check_new_run_dir

    try:
        check_new_run_dir(out)
    except RunDirError as exc:
        raise UserError(str(exc)) from None


@dataclass
class PreparedRun:
    """A run ready to start: its job and items, settings, models' services and directory.

    Each command's `prepare_*` builds one from validated settings (everything that may refuse the
    run happens there, before its directory is made); the command line runs it with `execute`, the
    server (`serve`) awaits `run_prepared` inside its own event loop. One preparation, two drivers.
    """

    command: str
    job: Any
    items: Sequence[Any]
    settings: Any
    services: Any
    out: Path
    resume: bool
    # Loads local models and checks keys and endpoints, in the loop that runs the job (API checks
    # then take their slot in the run's gate); a bad spec fails here, before the directory is made.
    preflight: Callable[[], Awaitable[None]] | None = None


async def run_prepared(
    prepared: PreparedRun,
    *,
    observer: Callable[[Any], None] | None = None,
    warn: Callable[[str], None] = warn,
) -> Any:
    """Run a prepared job to its end in the current event loop; the runner's report.

    Holds the run directory's lock and the ledger for the run's duration. A cancellation ends it the
    way Ctrl-C does (the manifest says interrupted; `--resume` goes on), and propagates.
    """
    from agents.providers.specs import SpecError
    from graphs.runner import run_items
    from storage.run_store import RunDirError, RunStore, lock_run_dir, prepare_run_dir

    services = prepared.services
    if prepared.preflight is not None:
        try:
            await prepared.preflight()
        except SpecError as exc:
            raise UserError(str(exc)) from None
    try:
        if not prepared.resume:
            prepare_run_dir(prepared.out)
        lock = lock_run_dir(prepared.out)  # held until the run ends (or the process dies)
    except RunDirError as exc:
        raise UserError(str(exc)) from None
    try:
        if services.ledger is not None:
            services.ledger.open()  # a damaged ledger is set aside now, its warning first
        return await run_items(
            prepared.items,
            prepared.job,
            settings=prepared.settings,
            services=services,
            store=RunStore(prepared.out),
            concurrency=services.limits.concurrency,
            observer=observer,
            resume=prepared.resume,
            warn=warn,
        )
    finally:
        if services.ledger is not None:
            services.ledger.close()
        lock.close()


def execute(prepared: PreparedRun, *, quiet: bool) -> Any:
    """Run a prepared job from the command line: a progress bar, Ctrl-C and SIGTERM; the report, or
    None when the run was interrupted (the message saying how to go on is printed)."""
    from agents.providers.endpoints import redact_urls
    from agents.providers.resilience import FatalModelError
    from graphs.progress import RunProgress
    from storage.run_store import MANIFEST

    services, out = prepared.services, prepared.out
    progress = RunProgress(
        total=len(prepared.items),
        meter=services.meter,
        unit=prepared.job.unit,
        kept=prepared.job.kept,
        enabled=not quiet,
    )
    # The ~270k objects of the imported libraries and loaded models live as long as the process;
    # freezing them keeps the garbage collector from re-scanning them (a full pass took 120 ms)
    # while the run's own short-lived objects are collected as usual.
    gc.collect()
    gc.freeze()
    # The run allocates many short-lived objects (requests, messages, checkpoints); a young-generation
    # pass every 700 allocations cost ~0.15 s of CPU on the 50-seed benchmark, every 20000 ~0.03 s.
    gc.set_threshold(20_000, 10, 10)
    # SIGTERM (a scheduler, `kill`) stops the run like Ctrl-C: finished items stay, the manifest says so.
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with progress:
            return asyncio.run(stoppable(run_prepared(prepared, observer=progress.item_done)))
    except FatalModelError as exc:
        raise UserError(f"{redact_urls(str(exc))} (run stopped; see {out / MANIFEST})") from None
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python cli.py {prepared.command} --resume {out}", file=sys.stderr)
        return None
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
