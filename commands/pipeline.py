"""`python cli.py pipeline`: augment -> build-dataset -> train -> evaluate, then a before/after report.

Each stage is the command itself, called through `cli.main` with the flags the pipeline forms, in its
own subdirectory of the pipeline's directory, so every stage keeps its own validation, manifest and
resume. What decides whether a stage is done is that stage's own record (augment's and evaluate's
manifest status, the dataset's files, train's summary.json or openai_job.json), so a pipeline killed
anywhere continues at the first unfinished stage: an interrupted augment or evaluate run is resumed
with its own --resume, a training run from its last checkpoint, an OpenAI job followed with --job.

OUT/pipeline.json keeps the flags (to refuse a resume that would change the results), each stage's
commands with their exit codes, and the numbers of OUT/report.md (both read from the stages' outputs
and written by evals/pipeline_report.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from commands.common import (
    add_settings_flags,
    default_out,
    explicit_flags,
    flag_of,
    stored_base_url,
    validated,
)
from commands.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError

RECORD = "pipeline.json"
REPORT = "report.md"

Suite = Literal["wvs", "hofstede", "downstream"]
SUITES: tuple[Suite, ...] = get_args(Suite)
StageName = Literal["augment", "dataset", "train", "eval-wvs", "eval-hofstede", "eval-downstream"]
STAGE_NAMES: tuple[StageName, ...] = get_args(StageName)
# What a stage's own record says: finished, begun (resume it), or never started.
StageState = Literal["done", "unfinished", "new"]


class PipelineSettings(BaseModel):
    """The flags of one pipeline; those in RESULT_FIELDS are fixed for the pipeline's life."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    RESULT_FIELDS: ClassVar[tuple[str, ...]] = (
        "culture",
        "generator",
        "judge",
        "limit",
        "n",
        "m",
        "val_fraction",
        "backend",
        "base_model",
        "max_steps",
        "train_config",
        "suites",
        "samples",
        "temperature",
        "limit_per_task",
    )

    culture: str = Field(
        description="The one culture to build the data for, fine-tune for and evaluate (e.g. Arabic)."
    )
    generator: str = Field(
        default="local",
        description="augment: generator model spec (local, local:PATH.gguf, openai:MODEL, google:MODEL).",
    )
    judge: list[str] | None = Field(
        default=None, description="augment: judge spec(s), repeatable (default: augment's, embed:local)."
    )
    limit: int | None = Field(
        default=None, gt=0, description="augment: only the first K seeds (default: all)."
    )
    n: int | None = Field(
        default=None, description="augment: paraphrases to keep per seed (default: augment's)."
    )
    m: int | None = Field(default=None, description="augment: samples to keep per seed (default: augment's).")
    val_fraction: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description="build-dataset: share of whole questions held out for validation; the WVS suite scores "
        "both models on them, questions the fine-tune never saw.",
    )
    backend: Literal["local", "openai"] = Field(
        default="local",
        description="train: local (LoRA with transformers on this machine: train's hf backend) or openai "
        "(an OpenAI fine-tuning job).",
    )
    base_model: str = Field(
        default="local",
        description="train: the model to fine-tune, and the evaluations' baseline: local (the embedded "
        "SmolLM2), a model directory or hub id (hf:ID also taken), or an OpenAI model name with --backend openai.",
    )
    max_steps: int | None = Field(
        default=None, gt=0, description="train: optimizer steps (local backend; default: train's epochs)."
    )
    train_config: Path | None = Field(
        default=None,
        description="train: a YAML or JSON file of further train settings (learning rate, LoRA rank, "
        "launcher, ...); the pipeline's own flags win over it.",
    )
    suites: list[Suite] = Field(
        default_factory=lambda: list(SUITES), description="The evaluate suites to run, in this order."
    )
    samples: int = Field(
        default=5,
        description="evaluate wvs/hofstede: answers per question, for models that give no option probabilities.",
    )
    temperature: float = Field(
        default=1.0, description="evaluate wvs/hofstede: sampling temperature of those answers."
    )
    limit_per_task: int | None = Field(
        default=None,
        description="evaluate downstream: a stratified sample of N items per task (default: all).",
    )
    # How providers are reached and pushed; a resumed pipeline may change these.
    base_url: str | None = Field(
        default=None,
        description="augment and evaluate: base URL of an OpenAI-compatible server (overrides OPENAI_BASE_URL).",
    )
    openai_base_url: str | None = Field(
        default=None,
        description="train --backend openai: base URL of the fine-tuning API (default: OPENAI_BASE_URL).",
    )
    concurrency: int | None = Field(default=None, description="augment and evaluate: LLM calls in flight.")
    rpm: float | None = Field(default=None, description="augment and evaluate: requests per minute.")
    tpm: float | None = Field(default=None, description="augment and evaluate: tokens per minute.")
    max_attempts: int | None = Field(
        default=None, description="augment and evaluate: attempts per call on transient failures."
    )
    timeout: float | None = Field(default=None, description="augment and evaluate: seconds per call attempt.")
    poll_interval: float | None = Field(
        default=None, description="train --backend openai: seconds between job status polls."
    )

    @model_validator(mode="after")
    def _bare_base_model(self) -> PipelineSettings:
        # The pipeline forms the provider prefix itself (hf: or openai:), so a prefixed name is the same model.
        prefix = "openai:" if self.backend == "openai" else "hf:"
        if self.base_model.startswith(prefix) and self.base_model != prefix:
            self.__dict__["base_model"] = self.base_model.removeprefix(prefix)
        return self


@dataclass(frozen=True)
class Stage:
    name: StageName
    number: int
    total: int

    def label(self) -> str:
        return f"pipeline [{self.number}/{self.total}] {self.name}"


def stage_names(settings: PipelineSettings) -> list[StageName]:
    return ["augment", "dataset", "train", *(eval_stage(suite) for suite in settings.suites)]


def eval_stage(suite: Suite) -> StageName:
    return f"eval-{suite}"  # type: ignore[return-value]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pipeline",
        help="augment -> build-dataset -> train -> evaluate (base and fine-tuned side by side), with a report.",
        description="Generate data for one culture, build its WVS-labelled fine-tuning set, fine-tune, and "
        "evaluate the base and the fine-tuned model side by side; each stage in its own subdirectory of "
        "--out, resumable at the first unfinished stage.",
    )
    p.add_argument("--culture", help=PipelineSettings.model_fields["culture"].description)
    add_settings_flags(
        p,
        PipelineSettings,
        [name for name in PipelineSettings.model_fields if name not in ("culture", "suites")],
    )
    p.add_argument(
        "--suite",
        dest="suites",
        action="append",
        choices=SUITES,
        help="An evaluate suite to run (repeatable; default: all three, wvs, hofstede, downstream).",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="Pipeline directory to create (default runs/pipeline-<UTC timestamp>).",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="Continue the pipeline in DIR with the flags in its pipeline.json, at the first unfinished "
        "stage. Re-running with the same --out does the same.",
    )
    p.add_argument(
        "--stop-after",
        choices=STAGE_NAMES,
        help="Stop once this stage has completed; --resume continues from the next one.",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="No progress bars or summaries of the stages (errors are still printed).",
    )
    p.set_defaults(handler=run)


# --- settings: a new pipeline's flags, or a resumed one's own --------------------------------------


def settings_to_run(args: argparse.Namespace) -> tuple[PipelineSettings, Path, dict[str, Any] | None]:
    """(settings, pipeline directory, its record when it is resumed), every input checked."""
    given = explicit_flags(args, PipelineSettings)
    resume_dir = args.resume
    if resume_dir is None and args.out is not None and (args.out / RECORD).exists():
        resume_dir = args.out
    if resume_dir is not None and args.out is not None and args.out != resume_dir:
        raise UserError(f"--resume {resume_dir} and --out {args.out} name different pipelines")
    if resume_dir is None:
        if "culture" not in given:
            raise UserError("--culture is required: the culture to fine-tune for (e.g. --culture Arabic)")
        out = args.out or Path("runs") / f"pipeline-{default_out().name}"
        return checked(validated(PipelineSettings, given), out), out, None
    record = read_record(resume_dir)
    try:
        stored = PipelineSettings(**record["config"])
    except (TypeError, ValidationError):
        raise UserError(f"--resume: {resume_dir / RECORD} is not a readable pipeline record") from None
    for field in ("base_url", "openai_base_url"):
        given[field] = stored_base_url(getattr(stored, field), given.get(field), f"--resume {resume_dir}")
    resumed = validated(PipelineSettings, {**stored.model_dump(), **given})
    for field in PipelineSettings.RESULT_FIELDS:
        now, then = getattr(resumed, field), getattr(stored, field)
        if field == "culture":  # stored in the culture map's spelling; --culture matches without case
            now, then = now.casefold(), then.casefold()
        if field in given and now != then:
            raise UserError(
                f"--resume {resume_dir}: {flag_of(field)} {given[field]!r} differs from the pipeline's "
                f"{getattr(stored, field)!r}; that would change the results, so start a new pipeline with another --out"
            )
    return checked(resumed, resume_dir), resume_dir, record


def read_record(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RECORD
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir} is not a pipeline directory (it does not exist)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--resume {run_dir}: no {RECORD} there, so no pipeline") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"--resume: {path} cannot be read ({type(exc).__name__})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise UserError(f"--resume: {path} is not a readable pipeline record (no config)")
    return record


def checked(settings: PipelineSettings, out: Path) -> PipelineSettings:
    """`settings` with the culture's own spelling, after every check that can be made before a stage
    runs: each stage's flags pass that stage's own parser and settings, the culture is known to every
    selected stage, the base model is loadable and the keys a stage needs are set."""
    from agents.providers.specs import SpecError, parse_judge_spec, parse_model_spec
    from builders.cultures import ALL_CULTURES, CultureError, load_cultures, select_cultures

    if settings.culture.strip().casefold() == ALL_CULTURES or "," in settings.culture:
        raise UserError(
            f"--culture {settings.culture}: the pipeline fine-tunes for one culture; name one (e.g. Arabic)"
        )
    try:
        [culture] = select_cultures(settings.culture, load_cultures())
        parse_model_spec(settings.generator, flag="--generator")
        for judge in settings.judge or ():
            parse_judge_spec(judge)
    except (CultureError, SpecError) as exc:
        raise UserError(str(exc)) from None
    settings = settings.model_copy(update={"culture": culture})
    if "wvs" in settings.suites and settings.val_fraction == 0:
        raise UserError("--val-fraction 0 holds out no question, and the wvs suite scores the held-out ones")
    if len(set(settings.suites)) != len(settings.suites):
        raise UserError(f"--suite: each suite once (got {', '.join(settings.suites)})")
    check_stage_flags(settings, out)
    check_training(settings, out)
    check_suites(settings, out)
    return settings


def check_stage_flags(settings: PipelineSettings, out: Path) -> None:
    """Each stage's flags through that stage's own parser and settings model."""
    from builders.build import BuildError
    from builders.command import settings_from_args
    from graphs.settings import AugmentSettings, EvaluateSettings

    validated(AugmentSettings, explicit_flags(parsed(augment_argv(settings, out)), AugmentSettings))
    try:
        settings_from_args(parsed(dataset_argv(settings, out)))
    except BuildError as exc:
        raise UserError(str(exc)) from None
    base_column = model_columns(settings, out, fine_tuned=None)
    for suite in settings.suites:
        args = parsed(evaluate_argv(suite, settings, out, base_column))
        if args.split:
            args.validation_of = Path(args.split[1])
        validated(EvaluateSettings, explicit_flags(args, EvaluateSettings))


def check_training(settings: PipelineSettings, out: Path) -> None:
    from trainers.command import config_from_args

    if settings.backend == "openai":
        if settings.max_steps is not None:
            raise UserError(
                f"--max-steps {settings.max_steps}: an OpenAI fine-tuning job takes no step limit (--backend openai)"
            )
        if not os.environ.get("OPENAI_API_KEY"):
            raise UserError(
                "OPENAI_API_KEY is not set; --backend openai needs it to upload the data and train"
            )
    # train's own settings (and --train-config file), with the dataset still to be built.
    config_from_args(parsed(train_argv(settings, out)))
    if settings.backend == "local":
        from trainers.local_model import require_available

        require_available(settings.base_model)


def check_suites(settings: PipelineSettings, out: Path) -> None:
    """The culture has what each selected suite scores it on."""
    from commands.survey import hofstede_questions
    from evals.data import load_task
    from evals.tasks import DEFAULT_DATA_DIR, TaskRegistryError, load_registry, select_tasks
    from graphs.settings import EvaluateSettings

    if "hofstede" in settings.suites:
        hofstede_questions(EvaluateSettings(suite="hofstede", culture=settings.culture))
    if "downstream" in settings.suites:
        try:
            tasks = select_tasks(load_registry(), [settings.culture], None)
        except TaskRegistryError as exc:
            raise UserError(f"--suite downstream: {exc}") from None
        if not any(load_task(task, [DEFAULT_DATA_DIR]) is not None for task in tasks):
            raise UserError(
                f"--culture {settings.culture}: none of its {len(tasks)} downstream tasks ships with culture-forge; "
                "leave that suite out (--suite wvs --suite hofstede)"
            )


def parsed(argv: Sequence[str]) -> argparse.Namespace:
    from cli import build_parser

    return build_parser().parse_args(list(argv))


# --- the stages' command lines ----------------------------------------------------------------------


def _given(pairs: Sequence[tuple[str, object]]) -> list[str]:
    """`--flag value` for each value that is set (None leaves the flag to the stage's default)."""
    return [part for flag, value in pairs if value is not None for part in (flag, str(value))]


def connection_flags(settings: PipelineSettings, quiet: bool = False) -> list[str]:
    """How augment and evaluate reach and pace providers: the flags a resumed run may change."""
    flags = _given(
        [
            ("--base-url", settings.base_url),
            ("--concurrency", settings.concurrency),
            ("--rpm", settings.rpm),
            ("--tpm", settings.tpm),
            ("--max-attempts", settings.max_attempts),
            ("--timeout", settings.timeout),
        ]
    )
    return [*flags, "--quiet"] if quiet else flags


def augment_argv(settings: PipelineSettings, out: Path, *, quiet: bool = False) -> list[str]:
    judges = [part for judge in settings.judge or () for part in ("--judge", judge)]
    limits = _given([("--limit", settings.limit), ("--n", settings.n), ("--m", settings.m)])
    return [
        "augment",
        "--out",
        str(out / "augment"),
        "--generator",
        settings.generator,
        *judges,
        *limits,
        *connection_flags(settings, quiet),
    ]


def dataset_argv(settings: PipelineSettings, out: Path) -> list[str]:
    return [
        "build-dataset",
        "--culture",
        settings.culture,
        "--samples",
        str(out / "augment" / "samples.jsonl"),
        "--val-fraction",
        str(settings.val_fraction),
        "--out",
        str(out / "dataset"),
    ]


def train_argv(settings: PipelineSettings, out: Path, *, follow_job: str | None = None) -> list[str]:
    train_dir = out / "train"
    argv = [
        "train",
        "--backend",
        "openai" if settings.backend == "openai" else "hf",
        "--base-model",
        settings.base_model,
        "--data",
        str(out / "dataset"),
        "--output-dir",
        str(train_dir),
        *_given([("--config", settings.train_config), ("--max-steps", settings.max_steps)]),
    ]
    if settings.backend == "openai":
        argv += _given(
            [
                ("--openai-base-url", settings.openai_base_url),
                ("--poll-interval", settings.poll_interval),
                ("--job", follow_job),
            ]
        )
    elif any(train_dir.glob("checkpoint-*")):
        argv.append("--resume")  # a killed run continues from its last checkpoint, as train does
    return argv


def model_columns(settings: PipelineSettings, out: Path, fine_tuned: str | None) -> list[str]:
    """evaluate's --model flags: the base model, then (once trained) the fine-tuned one, on one runtime."""
    if settings.backend == "openai":
        base = ["--model", f"openai:{settings.base_model}"]
        return base if fine_tuned is None else [*base, "--model", f"openai:{fine_tuned}"]
    base = ["--model", f"hf:{settings.base_model}"]
    if fine_tuned is None:
        return base
    if (Path(fine_tuned) / "adapter_config.json").is_file():
        return [*base, "--model", f"hf:{settings.base_model}", "--adapter", fine_tuned]
    return [*base, "--model", f"hf:{fine_tuned}"]  # a full fine-tune saved the whole model


def evaluate_argv(
    suite: Suite, settings: PipelineSettings, out: Path, columns: Sequence[str], *, quiet: bool = False
) -> list[str]:
    if suite == "downstream":
        measured = _given([("--limit-per-task", settings.limit_per_task)])
    else:
        measured = ["--samples", str(settings.samples), "--temperature", str(settings.temperature)]
        if suite == "wvs":
            measured = ["--split", "validation", str(out / "dataset"), *measured]
    return [
        "evaluate",
        "--suite",
        suite,
        "--culture",
        settings.culture,
        *columns,
        *measured,
        "--out",
        str(out / eval_stage(suite)),
        *connection_flags(settings, quiet),
    ]


def resume_argv(command: str, run_dir: Path, settings: PipelineSettings, quiet: bool) -> list[str]:
    """Continue an augment or evaluate run with its own settings (and this pipeline's connection flags)."""
    return [command, "--resume", str(run_dir), *connection_flags(settings, quiet)]


# --- what each stage's own record says ---------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when it is missing or unreadable (a stage that has not finished)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def manifest_state(run_dir: Path) -> StageState:
    """An augment or evaluate run: done when its manifest says completed, unfinished when it has one."""
    manifest = read_json(run_dir / "manifest.json")
    if manifest is not None:
        return "done" if manifest.get("status") == "completed" else "unfinished"
    if run_dir.is_dir():
        leftovers = [p.name for p in run_dir.iterdir() if p.name != ".lock"]
        if leftovers:
            raise UserError(
                f"{run_dir} holds {', '.join(sorted(leftovers)[:3])} but no manifest.json, so no run to continue; "
                "remove it to redo the stage"
            )
        # A run killed between making its directory and writing its manifest: nothing to keep.
        (run_dir / ".lock").unlink(missing_ok=True)
        run_dir.rmdir()
    return "new"


def openai_job(out: Path) -> dict[str, Any] | None:
    from trainers.openai_backend import RECORD_NAME

    return read_json(out / "train" / RECORD_NAME)


def stage_state(name: StageName, settings: PipelineSettings, out: Path) -> StageState:
    from trainers.openai_backend import TERMINAL

    directory = out / name
    if name == "augment" or name.startswith("eval-"):
        return manifest_state(directory)
    if name == "dataset":
        # build-dataset moves a finished build into place in one rename: files there are a whole dataset.
        return "done" if (directory / "train.jsonl").is_file() else "new"
    if settings.backend == "openai":
        job = openai_job(out)
        if job is None or job.get("status") in ("failed", "cancelled"):
            return "new"  # a failed job is not continued: a new one is made
        if job.get("status") == "succeeded" and job.get("fine_tuned_model"):
            return "done"
        return "unfinished" if job.get("id") and job.get("status") not in TERMINAL else "new"
    if (directory / "summary.json").is_file():
        return "done"
    return "unfinished" if any(directory.glob("checkpoint-*")) else "new"


def fine_tuned_model(settings: PipelineSettings, out: Path) -> str:
    """The trained model for evaluate: the OpenAI model name, or the adapter (or model) directory."""
    if settings.backend == "openai":
        job = openai_job(out) or {}
        return str(job["fine_tuned_model"])
    summary = read_json(out / "train" / "summary.json") or {}
    return str(summary.get("adapter_dir") or summary.get("model_dir") or out / "train" / "adapter")


def stage_argv(
    name: StageName, state: StageState, settings: PipelineSettings, out: Path, quiet: bool
) -> list[str]:
    directory = out / name
    if name == "augment":
        return (
            resume_argv("augment", directory, settings, quiet)
            if state == "unfinished"
            else augment_argv(settings, out, quiet=quiet)
        )
    if name == "dataset":
        return dataset_argv(settings, out)
    if name == "train":
        job = openai_job(out) if settings.backend == "openai" and state == "unfinished" else None
        return train_argv(settings, out, follow_job=job.get("id") if job else None)
    if state == "unfinished":
        return resume_argv("evaluate", directory, settings, quiet)
    suite: Suite = name.removeprefix("eval-")  # type: ignore[assignment]
    columns = model_columns(settings, out, fine_tuned_model(settings, out))
    return evaluate_argv(suite, settings, out, columns, quiet=quiet)


# --- running --------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def shown_command(argv: Sequence[str]) -> str:
    from agents.providers.endpoints import redact_urls

    return redact_urls(shlex.join(["python", "cli.py", *argv]))


class PipelineRecord:
    """OUT/pipeline.json, replaced atomically after every change."""

    def __init__(self, out: Path, data: dict[str, Any]) -> None:
        self.path = out / RECORD
        self.data = data

    @classmethod
    def new(cls, out: Path, settings: PipelineSettings) -> PipelineRecord:
        return cls(
            out, {"command": "pipeline", "status": "running", "started_at": _now(), "stages": {}}
        ).configured(settings)

    def configured(self, settings: PipelineSettings) -> PipelineRecord:
        from agents.providers.endpoints import redact_url

        config = settings.model_dump(mode="json")
        # Credentials in a URL are never stored: a resume asks for the URL again (stored_base_url).
        for field in ("base_url", "openai_base_url"):
            config[field] = redact_url(config[field])
        self.data["config"] = config
        return self

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"status": "new", "attempts": []})

    def save(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)


def call_stage(argv: Sequence[str]) -> int:
    """The stage's exit status from `cli.main`; Ctrl-C or SIGTERM wherever it lands is an interruption."""
    from cli import main

    try:
        return main(list(argv))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # a stage's argparse refusing a flag, already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def _stage_outcome(code: int) -> str:
    return {0: "completed", EXIT_INTERRUPTED: "interrupted", EXIT_USAGE: "refused"}.get(code, "failed")


def run_stage(
    stage: Stage, settings: PipelineSettings, out: Path, record: PipelineRecord, quiet: bool
) -> int:
    """Run (or skip, or resume) one stage; its exit status, 0 when it is done."""
    entry = record.stage(stage.name)
    state = stage_state(stage.name, settings, out)
    if state == "done":
        entry["status"] = "completed"
        print(f"{stage.label()}: already completed in {out / stage.name}; skipped", flush=True)
        return 0
    argv = stage_argv(stage.name, state, settings, out, quiet)
    action = "resumed" if state == "unfinished" else "started"
    print(f"{stage.label()}: {action}: {shown_command(argv)}", flush=True)
    attempt = {"action": action, "command": shown_command(argv), "started_at": _now()}
    entry["attempts"].append(attempt)
    entry["status"] = "running"
    record.save()
    started = time.perf_counter()
    code = call_stage(argv)
    seconds = round(time.perf_counter() - started, 1)
    outcome = _stage_outcome(code)
    attempt.update(exit_code=code, seconds=seconds, status=outcome)
    entry["status"] = outcome
    record.save()
    print(f"{stage.label()}: {outcome} in {seconds:g} s" + (f" (exit {code})" if code else ""), flush=True)
    return code


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`) stops the pipeline as Ctrl-C does, wherever it lands: the running
    stage records itself as interrupted (augment and evaluate install their own handler meanwhile)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_pipeline_dir(
    out: Path, record: dict[str, Any] | None, settings: PipelineSettings
) -> PipelineRecord:
    from commands.common import new_run_dir

    if record is not None:
        resumed = PipelineRecord(out, record).configured(settings)
        resumed.data.setdefault("stages", {})
        return resumed
    new_run_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the pipeline directory ({exc.strerror})") from None
    return PipelineRecord.new(out, settings)


def run(args: argparse.Namespace) -> int:
    from storage.run_store import RunDirError, lock_run_dir

    settings, out, stored = settings_to_run(args)
    stages = stage_names(settings)
    if args.stop_after is not None and args.stop_after not in stages:
        raise UserError(
            f"--stop-after {args.stop_after}: that stage is not in this pipeline ({', '.join(stages)})"
        )
    record = start_pipeline_dir(out, stored, settings)
    try:
        lock = lock_run_dir(out)  # held until this command returns (or the process dies)
    except RunDirError as exc:
        raise UserError(str(exc)) from None
    record.data.update(status="running", updated_at=_now())
    record.save()
    code, status = 0, "completed"
    try:
        with sigterm_interrupts():
            try:
                for number, name in enumerate(stages, start=1):
                    code = run_stage(Stage(name, number, len(stages)), settings, out, record, args.quiet)
                    if code != 0:
                        status = _stage_outcome(code)
                        break
                    if name == args.stop_after and number < len(stages):
                        status = "stopped"
                        break
            except KeyboardInterrupt:  # between stages, or in the pipeline's own bookkeeping
                code, status = EXIT_INTERRUPTED, "interrupted"
            finish(settings, out, record, status)
    finally:
        lock.close()
    print(closing_line(status, out, args.stop_after), file=sys.stderr if code else sys.stdout, flush=True)
    return code


def closing_line(status: str, out: Path, stop_after: str | None) -> str:
    go_on = f"python cli.py pipeline --resume {out}"
    return {
        "completed": f"pipeline: completed; report {out / REPORT}",
        "stopped": f"pipeline: stopped after {stop_after}; continue with: {go_on}",
        "interrupted": f"interrupted; continue with: {go_on}",
        "refused": f"pipeline: a stage refused its input (above); fix it and continue with: {go_on}",
        "failed": f"pipeline: a stage failed (see its manifest); retry it with: {go_on}",
    }[status]


def finish(settings: PipelineSettings, out: Path, record: PipelineRecord, status: str) -> None:
    """Record the outcome and write the report of what is done so far."""
    from evals.pipeline_report import collect_results, write_report

    results = collect_results(settings, out)
    record.data.update(status=status, updated_at=_now(), results=results)
    record.save()
    write_report(settings, out, record.data, results)
