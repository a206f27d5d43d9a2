"""`python cli.py evaluate`: models side by side on the paper's downstream culture tasks."""

from __future__ import annotations

import argparse
import sys
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
from graphs.settings import EvaluateSettings

FLAGS = (
    "suite",
    "culture",
    "task",
    "data_dir",
    "tasks_file",
    "limit_per_task",
    "samples",
    "temperature",
    "max_tokens",
    "max_chars",
    "sample_seed",
    "distribution",
    "questions",
    "validation_of",
    "answers_dir",
    "cultures_file",
    "hofstede_countries",
    "weak",
    "out",
    "base_url",
    "concurrency",
    "rpm",
    "tpm",
    "max_attempts",
    "timeout",
)


class AddModel(argparse.Action):
    """--model SPEC: one more column of the report."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        models = list(getattr(namespace, "models", None) or [])
        models.append({"spec": value, "adapter": None})
        namespace.models = models


class AttachAdapter(argparse.Action):
    """--adapter DIR: the LoRA adapter of the --model just before it."""

    def __call__(self, parser, namespace, value, option_string=None) -> None:
        models = list(getattr(namespace, "models", None) or [])
        if not models:
            parser.error("--adapter DIR must follow the --model it belongs to")
        if models[-1]["adapter"] is not None:
            parser.error(f"--model {models[-1]['spec']} already has --adapter {models[-1]['adapter']}")
        models[-1] = {**models[-1], "adapter": Path(value)}
        namespace.models = models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="Score models side by side on the downstream culture tasks (macro-F1 per task and culture).",
        description="Ask each model to label the items of the culture tasks as the culture's chatbot; macro-F1, "
        "accuracy and invalid answers per task, means per culture, paired differences, a report and plots.",
    )
    p.add_argument(
        "--model",
        dest="models",
        action=AddModel,
        metavar="SPEC",
        default=None,
        help="A model to evaluate (repeatable; each is a column): local, local:PATH.gguf, openai:MODEL, google:MODEL, "
        "hf:ID_OR_PATH (hf:local = the embedded SmolLM2), or a train output directory. Default: local.",
    )
    p.add_argument(
        "--adapter",
        action=AttachAdapter,
        metavar="DIR",
        help="A LoRA adapter written by train, for the hf: --model just before it.",
    )
    p.add_argument(
        "--export-lm-eval",
        type=Path,
        metavar="DIR",
        help="Write the selected tasks (same items, prompt, parser and macro-F1) as lm-evaluation-harness 0.4 "
        "task files in DIR, one group per culture, and stop; no model is run.",
    )
    p.add_argument(
        "--split",
        nargs=2,
        metavar=("validation", "DIR"),
        help="wvs: --split validation DIR is --validation-of DIR (the questions build-dataset held out in DIR).",
    )
    add_settings_flags(p, EvaluateSettings, FLAGS)
    add_run_flags(p, "evaluate")
    p.set_defaults(handler=run)


def evaluation_data(
    settings: EvaluateSettings, *, missing_listed_in: str = " (listed in the manifest's missing_tasks)"
):
    """(tasks, data, missing): the selected tasks, the loaded data of those whose file is present, and
    the tasks whose file is in none of the data folders."""
    from evals.data import load_task, stratified_sample
    from evals.tasks import DEFAULT_DATA_DIR, TaskRegistryError, load_registry, select_tasks

    try:
        registry = load_registry()
        if settings.tasks_file is not None:
            extra = load_registry(settings.tasks_file)
            keys = {t.key.casefold() for t in extra}
            registry = [t for t in registry if t.key.casefold() not in keys] + extra
        cultures = (
            None
            if settings.culture.strip().casefold() == "all"
            else [c for c in settings.culture.split(",") if c.strip()]
        )
        tasks = select_tasks(registry, cultures, settings.task)
    except TaskRegistryError as exc:
        raise UserError(str(exc)) from None
    folders = [*settings.data_dir, DEFAULT_DATA_DIR]
    data, missing = [], []
    for task in tasks:
        loaded = load_task(task, folders, max_chars=settings.max_chars)
        if loaded is None:
            missing.append(task)
            continue
        for problem in loaded.broken_lines[:3]:
            warn(problem)
        if len(loaded.broken_lines) > 3:
            warn(f"{loaded.path}: {len(loaded.broken_lines) - 3} more broken lines skipped")
        if settings.limit_per_task:
            loaded.items = stratified_sample(loaded.items, settings.limit_per_task, seed=settings.sample_seed)
        if loaded.items:
            data.append(loaded)
        else:
            warn(f"{task.key}: {loaded.path} holds no usable labelled item; skipped")
    if missing:
        if settings.data_dir:
            shown = ", ".join(t.key for t in missing)
            warn(f"{len(missing)} task files are in none of {', '.join(map(str, folders))}; skipped: {shown}")
        else:  # the default offline suite: only the shipped files are expected
            print(
                f"note: {len(tasks) - len(missing)} of the {len(tasks)} tasks ship with culture-forge; give --data-dir "
                f"(the CultureLLM data folder) for the other {len(missing)}{missing_listed_in}",
                file=sys.stderr,
            )
    if not data:
        raise UserError(
            f"no task to run: none of the {len(tasks)} selected tasks has a data file in {', '.join(map(str, folders))}"
        )
    return tasks, data, missing


def open_model(entry, services, seed: int):
    """The chat model of one --model (with its --adapter, which only hf: models take)."""
    from agents.providers.factory import create_chat_model
    from agents.providers.specs import SpecError

    if entry.adapter is None:
        return create_chat_model(entry.spec, services=services, flag="--model", seed=seed)
    if not entry.spec.startswith("hf:"):
        raise SpecError(f"--adapter {entry.adapter}: only hf: models take an adapter (--model {entry.spec})")
    return create_chat_model(entry.spec, services=services, flag="--model", seed=seed, adapter=entry.adapter)


def warm_up_plotting() -> None:
    """Load matplotlib and its font cache now, with the other libraries, rather than after the last
    answer: the run's report waited ~0.4 s on it (a 900-answer run is ~6 s of work at 200 ms / 32)."""
    import matplotlib.font_manager

    import evals.report  # noqa: F401

    matplotlib.font_manager.fontManager.findfont("DejaVu Sans")


def prepare_evaluate(
    settings: EvaluateSettings, resume_dir: Path | None, *, shared_gates: Any = None
) -> PreparedRun:
    """An evaluate run of `settings` (any suite; resuming `resume_dir` when given), ready to start."""
    import prompts
    from agents.providers.preflight import preflight
    from agents.providers.specs import SpecError
    from evals.scoring import score_and_report
    from graphs.evaluate import EvalCase, EvalContext, EvalParams
    from graphs.evaluate_job import EvaluateJob

    if settings.suite != "downstream":
        from commands.survey import prepare_survey

        return prepare_survey(settings, resume_dir, shared_gates=shared_gates)
    _, data, missing = evaluation_data(settings)
    check_prompts(prompts.EVALUATE_PROMPTS)
    out = settings.out or default_out()
    if resume_dir is None:
        new_run_dir(out)
    services = run_services(settings, out, shared_gates)
    try:
        models = tuple(open_model(entry, services, settings.sample_seed) for entry in settings.models)
        checks = partial(preflight, list(models), [], services)
    except SpecError as exc:
        raise UserError(str(exc)) from None
    settings = settings.model_copy(update={"out": out})
    context = EvalContext(
        models=models,
        tasks={d.task.key: d.task for d in data},
        params=EvalParams(
            temperature=settings.temperature, max_tokens=settings.max_tokens, sample_seed=settings.sample_seed
        ),
    )
    # Every model sees the same items in the same order; models are interleaved so that a stopped run
    # has answers of every model for the items it reached.
    cases = [
        EvalCase(model=index, item=item, sample=sample)
        for d in data
        for item in d.items
        for sample in range(settings.samples)
        for index in range(len(models))
    ]
    job = EvaluateJob(
        context,
        model_names=[entry.name for entry in settings.models],
        data=data,
        missing=missing,
        report=lambda outcomes, job, root: score_and_report(outcomes, job, root, seed=settings.sample_seed),
    )
    warm_up_plotting()
    return PreparedRun(
        "evaluate", job, cases, settings, services, out, resume=resume_dir is not None, preflight=checks
    )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "models", None) is None:
        args.models = None  # the settings' default model
    if getattr(args, "split", None):
        split, directory = args.split
        if split != "validation":
            raise UserError(
                f"--split {split}: only the validation split can be evaluated (--split validation DIR)"
            )
        args.validation_of = Path(directory)
    settings, resume_dir = settings_to_run(EvaluateSettings, args, "evaluate")
    if settings.suite != "downstream":
        if args.export_lm_eval is not None:
            raise UserError(
                "--export-lm-eval exports the downstream tasks; it does not take --suite " + settings.suite
            )
        from commands.survey import run_survey

        return run_survey(settings, resume_dir, quiet=args.quiet)
    if args.export_lm_eval is not None:
        if resume_dir is not None:
            raise UserError("--export-lm-eval writes task files and runs nothing: it does not take --resume")
        return export_lm_eval(settings, args.export_lm_eval, quiet=args.quiet)
    prepared = prepare_evaluate(settings, resume_dir)
    report = execute(prepared, quiet=args.quiet)
    out, job = prepared.out, prepared.job
    if report is None:
        return EXIT_INTERRUPTED
    if not args.quiet:
        print_results(job.results, out)
    return 0 if report.status == "completed" else 1


def export_lm_eval(settings: EvaluateSettings, out_dir: Path, *, quiet: bool) -> int:
    """--export-lm-eval DIR: the selected tasks as lm-eval task files (evaluate's sampled items)."""
    from evals.lm_eval_export import LmEvalExportError, write_lm_eval_tasks

    _, data, _ = evaluation_data(settings, missing_listed_in="")
    try:
        written = write_lm_eval_tasks(
            data, out_dir, max_tokens=settings.max_tokens, temperature=settings.temperature
        )
    except LmEvalExportError as exc:
        raise UserError(f"--export-lm-eval {out_dir}: {exc}") from None
    except OSError as exc:
        raise UserError(f"--export-lm-eval {out_dir}: cannot write there: {exc}") from None
    if not quiet:
        groups = [p.stem for p in written[len(data) :]]  # the task YAMLs come first, then the groups
        print(
            f"wrote {len(data)} lm-eval tasks and {len(groups)} culture groups to {out_dir}; run them with\n"
            f"  lm_eval --include_path {out_dir} --tasks {','.join(groups)} --apply_chat_template "
            "--model local-chat-completions --model_args model=NAME,base_url=http://HOST/v1/chat/completions"
        )
    return 0


def print_results(results: dict[str, Any] | None, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    if not results:
        return
    models = results["models"]
    table = Table(title="macro-F1 per culture (mean over its tasks) [95% interval]")
    table.add_column("culture")
    for name in models:
        table.add_column(name)
    for culture, row in results["cultures"].items():
        cells = [row.get(name) for name in models]
        table.add_row(
            culture,
            *(f"{c['macro_f1']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]" if c else "-" for c in cells),
        )
    Console().print(table)
    print(f"report: {out / 'report.md'}")
