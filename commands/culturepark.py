"""`python cli.py culturepark`: CulturePark dialogues, opinions, verification and de-duplication on the
shared runner, one LangGraph thread per (culture, seed)."""

from __future__ import annotations

import argparse
import json
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
    warn,
)
from commands.errors import EXIT_INTERRUPTED, UserError
from graphs.settings import CultureParkSettings

CONTEXT_FILE = Path(__file__).resolve().parent.parent / "data" / "culture_context.jsonl"
FLAGS = (
    "culture",
    "mode",
    "style",
    "turns",
    "seeds",
    "limit",
    "out",
    "generator",
    "verifier",
    "embedder",
    "base_url",
    "clusters",
    "near_duplicate",
    "temperature",
    "sample_seed",
    "concurrency",
    "rpm",
    "tpm",
    "max_attempts",
    "timeout",
    "answers_dir",
    "cultures_file",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "culturepark",
        help="CulturePark: agents of a culture discuss WVS questions; their verified opinions become training data.",
        description="Role-played dialogues about WVS seeds, opinions extracted, verified against the culture's "
        "survey answers, repaired once or dropped, de-duplicated. Defaults run offline on the embedded models.",
    )
    add_settings_flags(p, CultureParkSettings, FLAGS)
    add_run_flags(p, "culturepark")
    p.set_defaults(handler=run)


def culture_descriptions(path: Path = CONTEXT_FILE) -> dict[str, str]:
    """The first sentence of each shipped culture description (casefolded names), for the personas."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        first = record["description"].split(". ")[0].rstrip(".") + "."
        found[record["culture"].casefold()] = first
    return found


def dialogue_items(settings: CultureParkSettings):
    """(items, skipped): one item per culture and seed the culture's people answered, and per culture
    the questions none of its countries asked (never discussed against an invented attitude)."""
    from agents.attitude import attitude_of
    from builders.build import DEFAULT_ANSWERS_DIR, compute_labels, parse_scales
    from builders.cultures import CultureError, load_cultures, select_cultures
    from builders.labels import LabelMethod
    from graphs.culturepark import ParkItem
    from storage.seeds import SeedFileError, load_seeds
    from storage.wvs_answers import AnswersFileError, load_countries

    try:
        known = load_cultures(settings.cultures_file)
        names = [
            n for part in settings.culture.split(",") if part.strip() for n in select_cultures(part, known)
        ]
        cultures = {name: known[name] for name in dict.fromkeys(names)}
        seeds = load_seeds(settings.seeds)
        if settings.limit:
            seeds = seeds[: settings.limit]
        answers = load_countries(
            (country for countries in cultures.values() for country in countries),
            [seed.q_id for seed in seeds],
            [*settings.answers_dir, DEFAULT_ANSWERS_DIR],
        )
    except (CultureError, SeedFileError, AnswersFileError) as exc:
        raise UserError(str(exc)) from None
    try:
        scales = parse_scales(seeds, settings.seeds)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    # The dataset builder's labels: the most frequent valid answer, each country weighing the same.
    labels = {
        (label.culture, label.q_id): label.label
        for label in compute_labels(cultures, seeds, scales, answers, LabelMethod.mode)
    }
    descriptions = culture_descriptions()
    items, skipped = [], {}
    for culture in cultures:
        for seed in seeds:
            attitude = attitude_of(culture, seed, labels[(culture, seed.q_id)])
            if attitude is None:
                skipped.setdefault(culture, []).append(seed.q_id)
                continue
            items.append(ParkItem(culture, seed, attitude, descriptions.get(culture.casefold(), "")))
    return items, skipped


def prepare_culturepark(
    settings: CultureParkSettings, resume_dir: Path | None, *, shared_gates: Any = None
) -> PreparedRun:
    """A culturepark run of `settings` (resuming `resume_dir` when given), ready to start."""
    import prompts
    from agents.providers.factory import create_chat_model, create_embedder
    from agents.providers.preflight import preflight
    from agents.providers.specs import SpecError, parse_judge_spec
    from agents.verifier import OpinionVerifier
    from graphs.culturepark import ParkContext, ParkParams
    from graphs.culturepark_job import CultureParkJob

    items, skipped = dialogue_items(settings)
    for culture, q_ids in skipped.items():
        warn(f"{culture}: no valid survey answers to {', '.join('Q' + q for q in q_ids)}; not discussed")
    if not items:
        raise UserError(f"no question to discuss: none has a valid answer for {settings.culture}")
    check_prompts(prompts.CULTUREPARK_PROMPTS)
    out = settings.out or default_out()
    if resume_dir is None:
        new_run_dir(out)
    services = run_services(settings, out, shared_gates)
    try:
        generator = create_chat_model(settings.generator, services=services, seed=settings.sample_seed)
        assert settings.verifier is not None
        verifier_spec = parse_judge_spec(settings.verifier, flag="--verifier")
        verifier_model = create_chat_model(verifier_spec.model, services=services, flag="--verifier")
        embedder_spec = parse_judge_spec(settings.embedder, flag="--embedder")
        if embedder_spec.kind != "embed":
            raise SpecError(
                f"--embedder: {settings.embedder} is not an embedding spec (embed:local, embed:openai:MODEL, ...)"
            )
        embedder = create_embedder(embedder_spec.model, services, flag="--embedder")
        checks = partial(preflight, [generator, verifier_model], [embedder], services)
    except SpecError as exc:
        raise UserError(str(exc)) from None
    settings = settings.model_copy(update={"out": out})
    context = ParkContext(
        generator=generator,
        verifier=OpinionVerifier(verifier_model),
        embedder=embedder,
        params=ParkParams.of(settings),
    )
    job = CultureParkJob(context, near_duplicate=settings.near_duplicate, skipped=skipped)
    return PreparedRun(
        "culturepark", job, items, settings, services, out, resume=resume_dir is not None, preflight=checks
    )


def run(args: argparse.Namespace) -> int:
    from graphs.culturepark_job import DIALOGUES, OPINIONS
    from graphs.progress import print_summary

    settings, resume_dir = settings_to_run(CultureParkSettings, args, "culturepark")
    prepared = prepare_culturepark(settings, resume_dir)
    report = execute(prepared, quiet=args.quiet)
    services, out, skipped = prepared.services, prepared.out, prepared.job.skipped
    if report is None:
        return EXIT_INTERRUPTED
    if not args.quiet:
        done = [o for o in report.outcomes if not o.failure]
        rows = [
            ("dialogues", f"{len(report.outcomes)} ({len(report.failed)} failed)"),
            ("questions never asked", str(sum(len(q) for q in skipped.values()))),
            ("opinions extracted", str(sum(o.stats.opinions_extracted for o in done))),
            (
                "agreeing (as voiced / after rewrite)",
                f"{sum(o.stats.entailed for o in done)} / {sum(o.stats.rewrites_kept for o in done)}",
            ),
            ("opinions kept", str(sum(len(o.kept) for o in done))),
        ]
        print_summary(
            f"culturepark: {report.status}",
            rows,
            services.meter,
            [out / DIALOGUES, out / OPINIONS, out / "manifest.json"],
            [(o.item.key, o.failure or "") for o in report.failed],
        )
    return 0 if report.status == "completed" else 1
