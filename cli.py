"""Command line: `python cli.py augment|build-dataset|train ...`.

`main(argv) -> int` is what tests call. User errors print one line and return 2, with no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

T = TypeVar("T")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Anything the user can fix: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr instead of usage plus message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see --help)\n")


def _help(field: str) -> str:
    from graphs.settings import AugmentSettings

    info = AugmentSettings.model_fields[field]
    default = info.get_default(call_default_factory=True)
    suffix = (
        ""
        if default in (None, [])
        else f" (default: {default if not isinstance(default, list) else ' '.join(default)})"
    )
    return (info.description or "") + suffix


def add_augment_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "augment",
        help="CultureLLM semantic augmentation of WVS seeds (paraphrase, judge, synonym substitution).",
        description="Expand seed questions into semantically equivalent samples. Defaults run offline on the embedded models.",
    )
    p.add_argument("--seeds", type=Path, help=_help("seeds"))
    p.add_argument("--out", type=Path, help=_help("out"))
    p.add_argument("--limit", type=int, help=_help("limit"))
    p.add_argument("--generator", help=_help("generator"))
    p.add_argument("--judge", action="append", metavar="SPEC", help=_help("judge"))
    p.add_argument("--base-url", dest="base_url", help=_help("base_url"))
    p.add_argument("--n", type=int, help=_help("n"))
    p.add_argument("--m", type=int, help=_help("m"))
    p.add_argument("--threshold", type=float, help=_help("threshold"))
    p.add_argument("--max-rounds", dest="max_rounds", type=int, help=_help("max_rounds"))
    p.add_argument("--max-synonyms", dest="max_synonyms", type=int, help=_help("max_synonyms"))
    p.add_argument("--max-substitutions", dest="max_substitutions", type=int, help=_help("max_substitutions"))
    p.add_argument("--concurrency", type=int, help=_help("concurrency"))
    p.add_argument("--rpm", type=float, help=_help("rpm"))
    p.add_argument("--tpm", type=float, help=_help("tpm"))
    p.add_argument("--max-attempts", dest="max_attempts", type=int, help=_help("max_attempts"))
    p.add_argument("--timeout", type=float, help=_help("timeout"))
    p.add_argument("--temperature", type=float, help=_help("temperature"))
    p.add_argument(
        "--no-inversion-guard",
        dest="inversion_guard",
        action="store_false",
        default=None,
        help="Keep candidates that swap opposed words or flip the negation (the judge alone decides).",
    )
    p.add_argument(
        "--synonyms", choices=["auto", "generator", "wordnet", "generator+wordnet"], help=_help("synonyms")
    )
    p.add_argument(
        "--strict-meaning",
        dest="strict_meaning",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=_help("strict_meaning"),
    )
    p.add_argument("--sample-seed", dest="sample_seed", type=int, help=_help("sample_seed"))
    p.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="Continue an interrupted run in DIR with its own settings: finished seeds are kept, answers "
        "already received are replayed from its ledger. Re-running with the same --out does the same.",
    )
    p.add_argument(
        "--quiet", action="store_true", help="No progress bar or summary (errors are still printed)."
    )
    p.set_defaults(handler=run_augment)


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _validated(values: dict):
    """`AugmentSettings` of `values`; the first invalid one is a one-line error naming its flag."""
    from graphs.settings import AugmentSettings

    try:
        return AugmentSettings(**values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = str(problem["loc"][0]) if problem["loc"] else "settings"
        raise UserError(f"{_flag(field)}: {problem['msg'].lower()} (got {values.get(field)!r})") from None


def _settings_from(args: argparse.Namespace):
    return _validated(_explicit_flags(args))


def _warn(message: str) -> None:
    """A problem the command recovers from: one line on stderr."""
    from agents.endpoints import redact_urls

    print(f"warning: {redact_urls(message)}", file=sys.stderr)


def _run_dir_to_read(flag: str, path: Path) -> None:
    """Refuse, in one line, a path given as an existing run directory that is not a directory."""
    if not path.exists():
        raise UserError(f"{flag} {path} does not exist")
    if not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a run directory")


def _stored_base_url(stored: str | None, given: str | None, where: str) -> str | None:
    """The base URL to use again: a stored one had its credentials replaced by ***, so it is only
    usable as it is when it had none."""
    from agents.endpoints import has_credentials

    if given is None and has_credentials(stored):
        raise UserError(
            f"{where}: the run's base URL {stored} had credentials, which are never stored; "
            "give --base-url again"
        )
    return given or stored


# Settings whose change would change the samples: a resume must keep them.
RESULT_FIELDS = (
    "seeds",
    "limit",
    "generator",
    "judge",
    "n",
    "m",
    "threshold",
    "max_rounds",
    "max_synonyms",
    "max_substitutions",
    "temperature",
    "sample_seed",
    "inversion_guard",
    "synonyms",
    "strict_meaning",
)


def _explicit_flags(args: argparse.Namespace) -> dict:
    from graphs.settings import AugmentSettings

    return {
        name: getattr(args, name)
        for name in AugmentSettings.model_fields
        if getattr(args, name, None) is not None
    }


def _resume_settings(args: argparse.Namespace, run_dir: Path):
    """The interrupted run's own settings; flags may change only how hard providers are pushed."""
    import prompts
    from graphs.settings import AugmentSettings
    from storage.run_store import MANIFEST

    _run_dir_to_read("--resume", run_dir)
    path = run_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        stored = AugmentSettings(**manifest["config"])
    except FileNotFoundError:
        raise UserError(f"--resume {run_dir}: no {MANIFEST} there, so no run to resume") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--resume: {path} cannot be read ({exc})") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        raise UserError(
            f"--resume: {path} is not a readable augment manifest ({type(exc).__name__})"
        ) from None
    given = _explicit_flags(args)
    given.pop("out", None)
    given["base_url"] = _stored_base_url(stored.base_url, given.get("base_url"), f"--resume {run_dir}")
    for field in RESULT_FIELDS:
        if field in given and given[field] != getattr(stored, field):
            raise UserError(
                f"--resume {run_dir}: {_flag(field)} {given[field]!r} differs from the run's {getattr(stored, field)!r};"
                " that would change the results, so start a new run with another --out"
            )
    for name, info in (manifest.get("prompts") or {}).items():
        try:
            current = prompts.template(name).sha256
        except prompts.PromptError:
            current = None
        if current != info.get("sha256"):
            raise UserError(
                f"--resume {run_dir}: prompt {name} changed since the run started; start a new run"
            )
    # Validated again: the flags that may change (--rpm, --timeout, ...) get the same checks.
    return _validated({**stored.model_dump(), **given, "out": run_dir})


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _stoppable(run: Coroutine[Any, Any, T]) -> T:
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


def _default_out() -> Path:
    return Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def run_augment(args: argparse.Namespace) -> int:
    import prompts
    from agents.endpoints import redact_urls
    from agents.factory import ModelServices, create_chat_model, create_judge
    from agents.guards import MeaningGuard
    from agents.preflight import preflight
    from agents.resilience import CallLimits, FatalModelError
    from agents.specs import SpecError
    from agents.thesaurus import default_thesaurus
    from graphs.augment import AugmentContext, AugmentParams
    from graphs.progress import RunProgress, print_summary
    from graphs.runner import run_augmentation
    from storage.ledger import LEDGER, CallLedger
    from storage.run_store import (
        MANIFEST,
        RunDirError,
        RunStore,
        check_new_run_dir,
        lock_run_dir,
        prepare_run_dir,
    )
    from storage.seeds import SeedFileError, load_seeds
    from storage.wordnet import WordNetMissing

    resume_dir = args.resume
    if resume_dir is None and args.out is not None and (args.out / MANIFEST).exists():
        resume_dir = args.out  # re-running with the same --out continues that run
    if resume_dir is not None and args.out is not None and args.out != resume_dir:
        raise UserError(f"--resume {resume_dir} and --out {args.out} name different runs")
    settings = _resume_settings(args, resume_dir) if resume_dir is not None else _settings_from(args)
    try:
        seeds = load_seeds(settings.seeds)
    except SeedFileError as exc:
        raise UserError(str(exc)) from None
    if settings.limit:
        seeds = seeds[: settings.limit]
    try:  # a broken template fails here, before any model is called or a run directory made
        for name in prompts.AUGMENT_PROMPTS:
            prompts.template(name)
    except prompts.PromptError as exc:
        raise UserError(str(exc)) from None
    limits = CallLimits(
        concurrency=settings.concurrency,
        rpm=settings.rpm,
        tpm=settings.tpm,
        max_attempts=settings.max_attempts,
        timeout_s=settings.timeout,
    )
    out = settings.out or _default_out()
    if resume_dir is None:
        try:
            check_new_run_dir(out)
        except RunDirError as exc:
            raise UserError(str(exc)) from None
    ledger = CallLedger(out / LEDGER, warn=_warn)
    services = ModelServices(limits=limits, base_url=settings.base_url, ledger=ledger)
    try:
        generator = create_chat_model(settings.generator, services=services, seed=settings.sample_seed)
        judge = create_judge(settings.judge, settings.threshold, services)
        asyncio.run(preflight(generator, judge, services))
    except SpecError as exc:
        raise UserError(str(exc)) from None
    settings = settings.model_copy(update={"out": out})
    # Everything that may still refuse the run comes before its directory is made.
    # The generator-dependent defaults were resolved when the settings were validated.
    synonym_source, strict = settings.synonyms, bool(settings.strict_meaning)
    thesaurus = None
    if synonym_source != "generator" or strict or settings.inversion_guard:
        try:
            thesaurus = default_thesaurus()
        except WordNetMissing as exc:
            raise UserError(str(exc)) from None
    context = AugmentContext(
        generator=generator,
        judge=judge,
        guard=MeaningGuard(thesaurus, strict=strict) if settings.inversion_guard else None,
        thesaurus=thesaurus,
        params=AugmentParams(
            n=settings.n,
            m=settings.m,
            max_rounds=settings.max_rounds,
            max_synonyms=settings.max_synonyms,
            max_substitutions=settings.max_substitutions,
            temperature=settings.temperature,
            sample_seed=settings.sample_seed,
            inversion_guard=settings.inversion_guard,
            synonym_source=synonym_source,
            strict_meaning=strict,
        ),
    )
    try:
        if resume_dir is None:
            prepare_run_dir(out)
        lock = lock_run_dir(out)  # held until this command returns (or the process dies)
    except RunDirError as exc:
        raise UserError(str(exc)) from None
    progress = RunProgress(total=len(seeds), meter=services.meter, enabled=not args.quiet)
    # The ~270k objects of the imported libraries and loaded models live as long as the process;
    # freezing them keeps the garbage collector from re-scanning them (a full pass took 120 ms)
    # while the run's own short-lived objects are collected as usual.
    gc.collect()
    gc.freeze()
    # The run allocates many short-lived objects (requests, messages, checkpoints); a young-generation
    # pass every 700 allocations cost ~0.15 s of CPU on the 50-seed benchmark, every 20000 ~0.03 s.
    gc.set_threshold(20_000, 10, 10)
    # SIGTERM (a scheduler, `kill`) stops the run like Ctrl-C: finished seeds stay, the manifest says so.
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        ledger.open()  # a damaged ledger is set aside now, its warning printed before the progress bar
        with progress:
            report = asyncio.run(
                _stoppable(
                    run_augmentation(
                        seeds,
                        settings=settings,
                        services=services,
                        context=context,
                        store=RunStore(out),
                        observer=progress.seed_done,
                        resume=resume_dir is not None,
                        warn=_warn,
                    )
                )
            )
    except FatalModelError as exc:
        raise UserError(f"{redact_urls(str(exc))} (run stopped; see {out / MANIFEST})") from None
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python cli.py augment --resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        services.ledger.close()
        signal.signal(signal.SIGTERM, previous_sigterm)
        lock.close()
    if not args.quiet:
        print_summary(report, services.meter, out)
    return 0 if report.status == "completed" else 1


def add_rejudge_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rejudge",
        help="Apply another judge or threshold to a finished augment run's candidates (no generator calls).",
    )
    p.add_argument(
        "run", type=Path, help="The augment run directory (with manifest.json and candidates.jsonl)."
    )
    p.add_argument("--judge", action="append", metavar="SPEC", help="Judge spec(s); default: the run's own.")
    p.add_argument("--threshold", type=float, help="Similarity threshold; default: the run's own.")
    p.add_argument("--m", type=int, help="Samples to keep per seed; default: the run's own.")
    p.add_argument("--base-url", dest="base_url", help=_help("base_url"))
    p.add_argument("--out", type=Path, help="New run directory (default: RUN/rejudge-<UTC timestamp>).")
    p.set_defaults(handler=run_rejudge)


def _remove_if_empty(path: Path) -> None:
    """Remove a directory this command made and then wrote nothing into."""
    with contextlib.suppress(OSError):  # not empty (or already gone): leave it
        path.rmdir()


def run_rejudge(args: argparse.Namespace) -> int:
    from agents.endpoints import redact_url
    from agents.factory import ModelServices, create_judge
    from agents.preflight import preflight
    from agents.resilience import FatalModelError, ModelCallFailed
    from agents.specs import SpecError
    from graphs.rejudge import rejudge_run
    from storage.run_store import MANIFEST, RunDirError, RunStore, check_new_run_dir, prepare_run_dir
    from storage.seeds import SeedFileError, load_seeds

    _run_dir_to_read("rejudge:", args.run)
    manifest_path = args.run / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        config = manifest["config"]
    except FileNotFoundError:
        raise UserError(f"rejudge: no {MANIFEST} in {args.run}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"rejudge: {manifest_path} cannot be read ({exc})") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"rejudge: {manifest_path} is not a readable augment manifest") from None
    if manifest.get("command") != "augment" or manifest.get("status") not in (
        "completed",
        "completed_with_failures",
    ):
        raise UserError(
            f"rejudge: {args.run} is not a finished augment run (status {manifest.get('status')!r})"
        )
    store = RunStore(args.run)
    candidates = store.read_candidates()
    if not candidates:
        raise UserError(f"rejudge: {args.run} has no candidates.jsonl to re-judge")
    threshold = config["threshold"] if args.threshold is None else args.threshold
    m = config["m"] if args.m is None else args.m
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold: must be between 0 and 1 (got {threshold})")
    if m <= 0:
        raise UserError(f"--m: must be positive (got {m})")
    judges = args.judge or config["judge"]
    out = args.out or args.run / ("rejudge-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"))
    base_url = _stored_base_url(config.get("base_url"), args.base_url, "rejudge")
    try:
        seeds = load_seeds(Path(config["seeds"]))
        check_new_run_dir(out)
        services = ModelServices(base_url=base_url)
        judge = create_judge(judges, threshold, services)
        # Key, endpoint and local models are checked before the output directory is made.
        asyncio.run(preflight(None, judge, services))
    except (SeedFileError, RunDirError, SpecError) as exc:
        raise UserError(str(exc)) from None
    done = {c["seed_id"] for c in candidates}
    seeds = [s for s in seeds if s.q_id in done]
    made = not out.exists()
    try:
        prepare_run_dir(out)
    except RunDirError as exc:
        raise UserError(str(exc)) from None
    settings = {
        "judge": judges,
        "threshold": threshold,
        "m": m,
        "base_url": redact_url(base_url),
        "source_config": config,
    }
    try:
        result = asyncio.run(
            rejudge_run(
                seeds,
                candidates,
                judge=judge,
                m=m,
                generator=manifest.get("generator", config["generator"]),
                source=args.run,
                store=RunStore(out),
                settings=settings,
            )
        )
    except (FatalModelError, ModelCallFailed) as exc:
        if made:
            _remove_if_empty(out)
        raise UserError(f"rejudge stopped: {exc}") from None
    counts = result["counts"]
    print(
        f"rejudged {counts['candidates']} candidates of {counts['seeds']} seeds with {judge.spec}: "
        f"{counts['samples']} samples in {out / 'samples.jsonl'}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cli.py", description="Culture-aware LLM data generation and fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_augment_parser(subparsers)
    add_rejudge_parser(subparsers)
    from builders.command import add_build_dataset_parser

    add_build_dataset_parser(subparsers)
    from trainers.command import add_train_parser

    add_train_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except UserError as exc:
        from agents.endpoints import redact_urls

        # Messages may quote a server's URL or answer: credentials never reach the terminal.
        print(f"error: {redact_urls(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
