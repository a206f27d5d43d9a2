"""`python cli.py rejudge RUN`: another judge or threshold over a finished augment run's candidates."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from commands.common import (
    PreparedRun,
    add_run_flags,
    add_settings_flags,
    execute,
    explicit_flags,
    new_run_dir,
    read_run_manifest,
    resume_settings,
    run_dir_to_resume,
    run_services,
    stored_base_url,
    validated,
)
from commands.errors import EXIT_INTERRUPTED, UserError
from graphs.settings import RejudgeSettings

FINISHED = ("completed", "completed_with_failures")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rejudge",
        help="Apply another judge or threshold to a finished augment run's candidates (no generator calls).",
    )
    p.add_argument(
        "source",
        type=Path,
        nargs="?",
        help="The augment run directory (with manifest.json and candidates.jsonl).",
    )
    add_settings_flags(
        p,
        RejudgeSettings,
        ("judge", "threshold", "m", "base_url", "concurrency", "rpm", "tpm", "max_attempts", "timeout"),
    )
    p.add_argument("--out", type=Path, help="New run directory (default: RUN/rejudge-<UTC timestamp>).")
    add_run_flags(p, "rejudge")
    p.set_defaults(handler=run)


def _new_settings(args: argparse.Namespace) -> RejudgeSettings:
    """Settings of a new re-judge: flags first, the source run's own judge, threshold and m after."""
    if args.source is None:
        raise UserError("rejudge: name the augment run to re-judge (or --resume a rejudge run)")
    out = args.out or args.source / ("rejudge-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"))
    values = with_source_defaults(args.source, explicit_flags(args, RejudgeSettings))
    return validated(RejudgeSettings, {**values, "out": out})


def with_source_defaults(source: Path, given: dict[str, Any]) -> dict[str, Any]:
    """A new re-judge's settings values: those `given`, then the source run's own judge, threshold,
    m and base URL for the rest (so the manifest records what was used). The command line and the
    server's rejudge jobs both start here; a source that is no finished augment run is a UserError."""
    manifest = read_run_manifest("rejudge:", source, "augment")
    if manifest.get("status") not in FINISHED:
        raise UserError(
            f"rejudge: {source} is not a finished augment run (status {manifest.get('status')!r})"
        )
    config = manifest["config"]
    return {
        "judge": config.get("judge"),
        "threshold": config.get("threshold"),
        "m": config.get("m"),
        **given,
        "source": source,
        "base_url": stored_base_url(config.get("base_url"), given.get("base_url"), "rejudge"),
    }


def prepare_rejudge(
    settings: RejudgeSettings, resume_dir: Path | None, *, shared_gates: Any = None
) -> PreparedRun:
    """A rejudge run of `settings` (resuming `resume_dir` when given), ready to start."""
    from agents.judge import create_judge, judge_models
    from agents.providers.preflight import preflight
    from agents.providers.specs import SpecError
    from graphs.rejudge import RejudgeContext, RejudgeJob, rejudge_items
    from storage.run_store import RunStore
    from storage.seeds import SeedFileError, load_seeds

    out = settings.out
    assert out is not None
    source = read_run_manifest("rejudge:", settings.source, "augment")
    candidates = RunStore(settings.source).read_candidates()
    if not candidates:
        raise UserError(f"rejudge: {settings.source} has no candidates.jsonl to re-judge")
    try:
        seeds = load_seeds(Path(source["config"]["seeds"]))
    except (SeedFileError, KeyError, TypeError) as exc:
        raise UserError(f"rejudge: the seeds of {settings.source} cannot be read ({exc})") from None
    if resume_dir is None:
        new_run_dir(out)
    services = run_services(settings, out, shared_gates)
    try:
        judge = create_judge(settings.judge, settings.threshold, services)
        # Key, endpoint and local models are checked (when the run starts) before its directory is made.
        checks = partial(preflight, *judge_models(judge), services)
    except SpecError as exc:
        raise UserError(str(exc)) from None
    job = RejudgeJob(
        RejudgeContext(judge=judge, m=settings.m),
        generator=source.get("generator", source["config"].get("generator", "")),
        source=str(settings.source),
    )
    items = rejudge_items(seeds, candidates)
    return PreparedRun(
        "rejudge", job, items, settings, services, out, resume=resume_dir is not None, preflight=checks
    )


def run(args: argparse.Namespace) -> int:
    from graphs.progress import print_summary

    resume_dir = run_dir_to_resume(args)
    if resume_dir is not None:
        settings = resume_settings(RejudgeSettings, args, resume_dir, "rejudge")
    else:
        settings = _new_settings(args)
    prepared = prepare_rejudge(settings, resume_dir)
    report = execute(prepared, quiet=True)
    services, out, items, judge = prepared.services, prepared.out, prepared.items, prepared.job.context.judge
    if report is None:
        return EXIT_INTERRUPTED
    samples = sum(len(o.samples) for o in report.outcomes)
    print(
        f"rejudged {sum(len(i.candidates) for i in items)} candidates of {len(items)} seeds with {judge.spec}: "
        f"{samples} samples in {out / 'samples.jsonl'}"
    )
    if report.failed and not args.quiet:
        print_summary(
            f"rejudge: {report.status}",
            [],
            services.meter,
            [],
            [(f"seed {o.item.seed.q_id}", o.failure or "") for o in report.failed],
        )
    return 0 if report.status == "completed" else 1
