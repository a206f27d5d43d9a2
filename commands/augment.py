"""`python cli.py augment`: CultureLLM semantic augmentation of WVS seeds on the shared runner."""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from pathlib import Path
from typing import Any

from commands.common import (
    PreparedRun,
    add_run_flags,
    add_settings_flags,
    check_prompts,
    default_out,
    execute,
    new_run_dir,
    run_services,
    settings_to_run,
)
from commands.errors import EXIT_INTERRUPTED, UserError
from graphs.settings import AugmentSettings

FLAGS = (
    "seeds",
    "out",
    "limit",
    "generator",
    "judge",
    "base_url",
    "n",
    "m",
    "threshold",
    "max_rounds",
    "max_synonyms",
    "max_substitutions",
    "concurrency",
    "rpm",
    "tpm",
    "max_attempts",
    "timeout",
    "temperature",
    "inversion_guard",
    "synonyms",
    "strict_meaning",
    "sample_seed",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "augment",
        help="CultureLLM semantic augmentation of WVS seeds (paraphrase, judge, synonym substitution).",
        description="Expand seed questions into semantically equivalent samples. Defaults run offline on the embedded models.",
    )
    add_settings_flags(p, AugmentSettings, FLAGS)
    add_run_flags(p, "augment")
    p.set_defaults(handler=run)


def prepare_augment(
    settings: AugmentSettings, resume_dir: Path | None, *, shared_gates: Any = None
) -> PreparedRun:
    """An augment run of `settings` (resuming `resume_dir` when given), ready to start."""
    import prompts
    from agents.guards import MeaningGuard
    from agents.judge import create_judge, judge_models
    from agents.providers.factory import create_chat_model
    from agents.providers.preflight import preflight
    from agents.providers.specs import SpecError
    from agents.thesaurus import default_thesaurus
    from graphs.augment import AugmentContext, AugmentParams
    from graphs.augment_job import AugmentJob
    from storage.seeds import SeedFileError, load_seeds
    from storage.wordnet import WordNetMissing

    try:
        seeds = load_seeds(settings.seeds)
    except SeedFileError as exc:
        raise UserError(str(exc)) from None
    if settings.limit:
        seeds = seeds[: settings.limit]
    check_prompts(prompts.AUGMENT_PROMPTS)
    out = settings.out or default_out()
    if resume_dir is None:
        new_run_dir(out)
    services = run_services(settings, out, shared_gates)
    try:
        generator = create_chat_model(settings.generator, services=services, seed=settings.sample_seed)
        judge = create_judge(settings.judge, settings.threshold, services)
        chats, embedders = judge_models(judge)
        checks = partial(preflight, [generator, *chats], embedders, services)
    except SpecError as exc:
        raise UserError(str(exc)) from None
    settings = settings.model_copy(update={"out": out})
    # Everything that may still refuse the run comes before its directory is made.
    params = AugmentParams.of(settings)
    thesaurus = None
    if params.synonym_source != "generator" or params.strict_meaning or params.inversion_guard:
        try:
            thesaurus = default_thesaurus()
        except WordNetMissing as exc:
            raise UserError(str(exc)) from None
    context = AugmentContext(
        generator=generator,
        judge=judge,
        guard=MeaningGuard(thesaurus, strict=params.strict_meaning) if params.inversion_guard else None,
        thesaurus=thesaurus,
        params=params,
    )
    return PreparedRun(
        "augment",
        AugmentJob(context),
        seeds,
        settings,
        services,
        out,
        resume=resume_dir is not None,
        preflight=checks,
    )


def run(args: argparse.Namespace) -> int:
    from graphs.progress import print_summary

    settings, resume_dir = settings_to_run(AugmentSettings, args, "augment")
    prepared = prepare_augment(settings, resume_dir)
    report = execute(prepared, quiet=args.quiet)
    services, out = prepared.services, prepared.out
    if report is None:
        return EXIT_INTERRUPTED
    if not args.quiet:
        yields = [len(o.samples) for o in report.outcomes if not o.failure]
        rows = [
            ("seeds", f"{len(report.outcomes)} ({len(report.failed)} failed)"),
            ("seeds with samples", str(sum(1 for y in yields if y))),
            ("samples kept", str(sum(yields))),
        ]
        if yields:
            rows.append(
                (
                    "per seed (min / median / max)",
                    f"{min(yields)} / {statistics.median(yields):g} / {max(yields)}",
                )
            )
        print_summary(
            f"augment: {report.status}",
            rows,
            services.meter,
            [out / "samples.jsonl", out / "manifest.json"],
            [(f"seed {o.seed.q_id}", o.failure or "") for o in report.failed],
        )
    return 0 if report.status == "completed" else 1
