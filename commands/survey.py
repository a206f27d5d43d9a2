"""`python cli.py evaluate --suite wvs|hofstede`: models answer survey questions as a culture's people.

The questions and their references are loaded (and every bad file reported in one line) before a
run directory is made or a model loaded; the run then goes through the shared runner like every
other command, and the scores, report and plots are made from answers.jsonl at the end.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

from commands.common import (
    PreparedRun,
    check_prompts,
    default_out,
    execute,
    new_run_dir,
    run_services,
    warn,
)
from commands.errors import EXIT_INTERRUPTED, UserError
from graphs.settings import EvaluateSettings


def wvs_questions(settings: EvaluateSettings) -> tuple[list[Any], Any]:
    """(the survey questions to ask, the suite's scoring data) of `--suite wvs`."""
    from evals import alignment
    from evals.survey_report import WvsSuite
    from graphs.survey import SurveyQuestion
    from storage.seeds import DEFAULT_SEEDS, SeedFileError, load_seeds

    try:
        seeds = load_seeds(DEFAULT_SEEDS)
        if settings.questions is not None:
            seeds = alignment.read_questions_file(settings.questions, seeds)
        if settings.validation_of is not None:
            seeds = alignment.read_validation_questions(settings.validation_of, seeds)
        by_culture: dict[str, Any] = {}
        for culture in [c.strip() for c in settings.culture.split(",") if c.strip()]:
            by_culture |= alignment.load_culture_questions(
                culture, seeds, answers_dirs=settings.answers_dir, cultures_file=settings.cultures_file
            )
    except (alignment.AlignmentDataError, SeedFileError) as exc:
        raise UserError(str(exc)) from None
    questions = [
        SurveyQuestion(
            suite="wvs",
            culture=culture,
            question=q.q_id,
            messages=tuple(alignment.question_messages(culture, q.seed)),
            options=tuple(q.scale.codes),
            parse=partial(alignment.parse_wvs_answer, scale=q.scale),
        )
        for culture, found in by_culture.items()
        for q in found.scorable
    ]
    if not questions:
        raise UserError(
            "no WVS question to ask: the selected cultures' surveys asked none of the selected questions"
        )
    return questions, WvsSuite(questions=by_culture, weak=settings.weak)


def hofstede_questions(settings: EvaluateSettings) -> tuple[list[Any], Any]:
    """(the survey questions to ask, the suite's scoring data) of `--suite hofstede`."""
    from evals import hofstede
    from evals.survey_report import HofstedeSuite, item_key
    from graphs.survey import SurveyQuestion

    try:
        items = hofstede.load_vsm_items()
        scores = hofstede.load_country_scores()
        culture_map = hofstede.load_culture_countries(
            settings.hofstede_countries or hofstede.DEFAULT_CULTURE_COUNTRIES_FILE, scores=scores
        )
        cultures = _selected(settings.culture, list(culture_map))
        references = {
            culture: hofstede.reference_scores(culture, scores, culture_map) for culture in cultures
        }
    except hofstede.HofstedeDataError as exc:
        raise UserError(str(exc)) from None
    questions = [
        SurveyQuestion(
            suite="hofstede",
            culture=culture,
            question=item_key(item),
            messages=tuple(hofstede.vsm_item_messages(item, culture)),
            options=tuple(item.options),
            parse=partial(hofstede.parse_vsm_answer, options=item.options),
        )
        for culture in cultures
        for item in items
    ]
    suite = HofstedeSuite(
        items=items,
        references=references,
        countries={culture: culture_map[culture].countries for culture in cultures},
    )
    return questions, suite


def _selected(culture: str, known: list[str]) -> list[str]:
    if culture.strip().casefold() == "all":
        return known
    by_fold = {name.casefold(): name for name in known}
    wanted = [c.strip() for c in culture.split(",") if c.strip()]
    unknown = [c for c in wanted if c.casefold() not in by_fold]
    if unknown:
        raise UserError(f"--culture {', '.join(unknown)}: unknown culture (known: {', '.join(known)})")
    return [by_fold[c.casefold()] for c in wanted]


def survey_cases(questions, models, settings: EvaluateSettings) -> list[Any]:
    """Each model's cases: one per question where it gives option probabilities, else --samples per question."""
    from graphs.survey import PROBABILITIES, SurveyCase

    cases = []
    for index, (model, entry) in enumerate(zip(models, settings.models, strict=True)):
        probabilities = settings.distribution == "probabilities" or (
            settings.distribution == "auto" and model.gives_option_probabilities
        )
        if probabilities and not model.gives_option_probabilities:
            raise UserError(
                f"--distribution probabilities: --model {entry.name} gives no option probabilities "
                "(hf:, local and openai: models do); use --distribution samples --samples K --temperature T"
            )
        if not probabilities and settings.samples > 1 and settings.temperature == 0:
            warn(
                f"--model {entry.name}: {settings.samples} greedy samples are one answer repeated; give --temperature"
            )
        samples = [PROBABILITIES] if probabilities else list(range(settings.samples))
        cases.extend(SurveyCase(model=index, question=q.key, sample=s) for q in questions for s in samples)
    return cases


def prepare_survey(
    settings: EvaluateSettings, resume_dir: Path | None, *, shared_gates: Any = None, quiet: bool = True
) -> PreparedRun:
    """An evaluate run of a survey suite (wvs, hofstede), ready to start."""
    import prompts
    from agents.providers.preflight import preflight
    from agents.providers.specs import SpecError
    from commands.evaluate import open_model, warm_up_plotting
    from evals.survey_report import score_and_report_survey
    from graphs.evaluate import EvalParams
    from graphs.survey import SurveyContext
    from graphs.survey_job import SurveyJob

    if settings.suite == "wvs":
        questions, suite = wvs_questions(settings)
        prompt_names = prompts.WVS_SURVEY_PROMPTS
    else:
        questions, suite = hofstede_questions(settings)
        prompt_names = prompts.HOFSTEDE_PROMPTS
    check_prompts(prompt_names)
    out = settings.out or default_out()
    services = run_services(settings, out, shared_gates)  # the ledger opens when the run starts
    try:
        models = tuple(open_model(entry, services, settings.sample_seed) for entry in settings.models)
    except SpecError as exc:
        raise UserError(str(exc)) from None
    cases = survey_cases(questions, models, settings)
    if resume_dir is None:
        new_run_dir(out)
    checks = partial(preflight, list(models), [], services)
    if settings.suite == "wvs" and not quiet:
        for culture, found in suite.questions.items():
            if found.skipped:
                print(
                    f"note: {culture}: {len(found.skipped)} question(s) its countries never asked are skipped: "
                    + ", ".join("Q" + q for q in found.skipped),
                    file=sys.stderr,
                )
    settings = settings.model_copy(update={"out": out})
    context = SurveyContext(
        models=models,
        questions={q.key: q for q in questions},
        params=EvalParams(
            temperature=settings.temperature, max_tokens=settings.max_tokens, sample_seed=settings.sample_seed
        ),
    )
    cultures = sorted({q.culture for q in questions})
    job = SurveyJob(
        context,
        model_names=[entry.name for entry in settings.models],
        prompt_names=prompt_names,
        manifest_extra={"suite": settings.suite, "cultures": cultures, "questions": len(questions)},
        report=lambda outcomes, job, root: score_and_report_survey(
            outcomes, job, root, suite=suite, seed=settings.sample_seed
        ),
    )
    warm_up_plotting()
    return PreparedRun(
        "evaluate", job, cases, settings, services, out, resume=resume_dir is not None, preflight=checks
    )


def run_survey(settings: EvaluateSettings, resume_dir: Path | None, *, quiet: bool) -> int:
    prepared = prepare_survey(settings, resume_dir, quiet=quiet)
    report = execute(prepared, quiet=quiet)
    out = prepared.out
    if report is None:
        return EXIT_INTERRUPTED
    if not quiet:
        print(f"report: {out / 'report.md'}")
    return 0 if report.status == "completed" else 1
