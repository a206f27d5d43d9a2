"""`build-dataset`: seeds, augmented samples, CulturePark opinions and WVS answers in; labels, examples
and a card out.

Everything that can be wrong with the inputs is checked before anything is written, and the output is
assembled in a hidden directory beside `--out` and renamed into place at the end, so a failed build
leaves no partial dataset behind.

`--out` is replaced whole, so it may never be or hold an input of the build or a run directory, and
`--overwrite` replaces only an earlier dataset (a directory with labels.jsonl). It may lie inside a
run directory (runs/X/dataset): that replaces nothing of the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from agents.providers.resilience import FatalModelError
from agents.providers.specs import SpecError
from builders.card import render_card
from builders.cultures import CultureError, CultureMap, load_cultures, select_cultures
from builders.examples import Example, ExampleSet, build_examples
from builders.formats import Format, write_examples, write_jsonl
from builders.labels import CultureLabel, LabelMethod, compute_label
from builders.opinions import (
    OpinionsError,
    SelectedOpinions,
    describe_mismatches,
    load_opinions,
    select_opinions,
)
from builders.samples import AugmentedSample, SamplesFileError, load_samples
from builders.scales import OptionScale, ScaleError, parse_option_scale
from builders.split import assign_splits, validation_questions
from builders.translate import ChatModel, Translations, translate_prompts
from commands.errors import UserError
from storage.records import OpinionRecord, Seed
from storage.run_store import run_marker
from storage.seeds import DEFAULT_SEEDS, SeedFileError, load_seeds
from storage.wvs_answers import AnswersFileError, CountryAnswers, load_countries

DEFAULT_ANSWERS_DIR = Path(__file__).resolve().parent.parent / "data" / "wvs" / "countries"
LABELS_FILE = "labels.jsonl"
CARD_FILE = "README.md"

Warn = Callable[[str], None]
ModelFactory = Callable[[str], ChatModel]


class BuildError(UserError):
    """A problem with the user's inputs or flags; its message is the one line the CLI prints."""


class BuildSettings(BaseModel):
    """Everything one `build-dataset` run depends on; each description is the flag's help text."""

    culture: str = Field(description="Culture to build (e.g. Arabic), or 'all' for CultureLLM-One.")
    out: Path = Field(description="Output directory for labels.jsonl, the training file(s) and README.md.")
    samples: Path | None = Field(
        default=None, description="samples.jsonl of an augment run; without it, one example per seed."
    )
    culturepark: Path | None = Field(
        default=None,
        description="A finished culturepark run directory: each verified opinion of a built culture adds an "
        "example answering its seed with the label and the opinion as the reason.",
    )
    seeds: Path = Field(default=DEFAULT_SEEDS, description="Seed file the samples were made from.")
    format: Format = Field(
        default="openai",
        description="Training file format: openai chat JSONL, sharegpt, alpaca, or an hf dataset (default: openai).",
    )
    label: LabelMethod = Field(
        default=LabelMethod.mode,
        description="Label of a question: the most frequent valid answer (mode, the default) or their rounded mean (mean).",
    )
    val_fraction: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Share of questions held out for validation (0 = none)."
    )
    answers_dir: list[Path] = Field(
        default_factory=list,
        description="Extra directory of <ISO3>.csv answer files, searched before the shipped ones (repeatable).",
    )
    cultures_file: Path | None = Field(
        default=None, description='JSON {"Culture": ["ISO3", ...]} adding to or replacing shipped cultures.'
    )
    translate: str | None = Field(default=None, description="Translate the user prompts into this language.")
    translate_model: str | None = Field(
        default=None,
        description="Generator spec that translates (local, local:PATH.gguf, openai:MODEL, google:MODEL).",
    )
    base_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server for --translate-model openai:MODEL.",
    )
    overwrite: bool = Field(default=False, description="Replace --out if it already holds files.")

    @model_validator(mode="after")
    def _translation_needs_a_model(self) -> BuildSettings:
        if self.translate and not self.translate_model:
            raise ValueError("--translate needs --translate-model SPEC")
        if self.translate_model and not self.translate:
            raise ValueError("--translate-model is only used with --translate LANGUAGE")
        return self


@dataclass
class BuildResult:
    settings: BuildSettings
    cultures: CultureMap  # the selected cultures only
    seeds: list[Seed]
    samples: list[AugmentedSample]
    opinions: list[OpinionRecord]  # every opinion of the --culturepark run, of any culture
    selected_opinions: SelectedOpinions
    answers: dict[str, CountryAnswers]
    labels: list[CultureLabel]
    example_set: ExampleSet
    examples: list[Example]  # after translation, with their split
    validation_q_ids: list[str]
    translation_failures: int
    written: list[str]


def _inputs(settings: BuildSettings) -> list[tuple[str, Path]]:
    """(flag, path) of every file or directory the build reads."""
    named: list[tuple[str, Path | None]] = [
        ("--samples", settings.samples),
        ("--culturepark", settings.culturepark),
        ("--seeds", settings.seeds),
        ("--cultures-file", settings.cultures_file),
        *(("--answers-dir", folder) for folder in settings.answers_dir),
        ("the shipped WVS answers", DEFAULT_ANSWERS_DIR),
    ]
    return [(flag, path) for flag, path in named if path is not None]


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _nested_run(root: Path) -> Path | None:
    """A run directory below `root`, or None."""
    for folder, _, _ in os.walk(root):
        if run_marker(Path(folder)):
            return Path(folder)
    return None


def check_out_dir(settings: BuildSettings) -> None:
    """Refuse an --out whose replacement would lose anything but an earlier dataset."""
    out, overwrite = settings.out, settings.overwrite
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} is a file, not a directory")
    target = out.resolve()
    for flag, path in _inputs(settings):
        if _is_within(path.resolve(), target):
            where = "is" if path.resolve() == target else "holds"
            raise BuildError(f"--out {out} {where} the input {flag} {path}; choose another directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    marker = run_marker(out)
    if marker is not None:
        raise BuildError(
            f"--out {out} is a run directory (it holds {marker}); build-dataset never replaces a run: "
            "choose another directory"
        )
    if not overwrite:
        raise BuildError(f"--out {out} already holds files; choose another directory or pass --overwrite")
    # Checked before walking the tree: --out / --overwrite must fail at once, not after a full walk.
    if not (out / LABELS_FILE).is_file():
        raise BuildError(
            f"--out {out} holds files that are not a dataset (no {LABELS_FILE}); --overwrite replaces "
            "only an earlier build: choose another directory"
        )
    nested = _nested_run(out)
    if nested is not None:
        raise BuildError(
            f"--out {out} holds the run directory {nested}; build-dataset never replaces a run: "
            "choose another directory"
        )


def parse_scales(seeds: Sequence[Seed], seeds_path: Path) -> dict[str, OptionScale]:
    scales = {}
    for seed in seeds:
        try:
            scales[seed.q_id] = parse_option_scale(seed.option)
        except ScaleError as exc:
            raise BuildError(f"{seeds_path}: seed Q{seed.q_id}: {exc}") from None
    return scales


def compute_labels(
    cultures: CultureMap,
    seeds: Sequence[Seed],
    scales: dict[str, OptionScale],
    answers: dict[str, CountryAnswers],
    method: LabelMethod,
) -> list[CultureLabel]:
    return [
        compute_label(
            culture,
            seed.q_id,
            scales[seed.q_id],
            {country: answers[country].counts[seed.q_id] for country in countries},
            method,
        )
        for culture, countries in cultures.items()
        for seed in seeds
    ]


def report_skips(example_set: ExampleSet, warn: Warn) -> None:
    for culture, skips in example_set.skipped.items():
        if skips.q_ids:
            questions = ", ".join(f"Q{q_id}" for q_id in skips.q_ids)
            warn(f"{culture}: no valid answers to {questions}; skipped {skips.counts()} examples")


async def translate_then_close(prompts: Iterable[str], language: str, model: ChatModel) -> Translations:
    """Translate, then close the model's HTTP client inside the same event loop."""
    try:
        return await translate_prompts(prompts, language, model)
    finally:
        close = getattr(model, "aclose", None)
        if close is not None:
            await close()


def translate_examples(
    examples: list[Example], settings: BuildSettings, model_factory: ModelFactory | None, warn: Warn
) -> tuple[list[Example], int]:
    """Examples whose user prompt is translated; those without a usable translation are dropped."""
    if model_factory is None:
        raise BuildError("--translate needs a model factory; none is available")
    try:
        model = model_factory(settings.translate_model or "")
        translations: Translations = asyncio.run(
            translate_then_close((example.user for example in examples), settings.translate or "", model)
        )
    except FatalModelError as exc:
        raise BuildError(f"--translate-model {settings.translate_model}: {exc}") from None
    except SpecError as exc:  # unknown spec, missing key or endpoint
        raise BuildError(str(exc)) from None
    for prompt, why in list(translations.failures.items())[:3]:
        warn(f"no {settings.translate} translation for the prompt {prompt.splitlines()[0]!r}: {why}")
    kept = []
    for example in examples:
        translated = translations.texts.get(example.user)
        if translated is not None:
            messages = [example.messages[0], {"role": "user", "content": translated}, example.messages[2]]
            kept.append(example.model_copy(update={"messages": messages}))
    dropped = len(examples) - len(kept)
    if dropped:
        warn(f"dropped {dropped} examples whose {len(translations.failures)} prompts could not be translated")
    return kept, dropped


def publish(staging: Path, out: Path) -> None:
    """Move a finished build into place, replacing what --out held (already checked to be allowed)."""
    if not out.exists():
        staging.rename(out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(retired / out.name)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def build_dataset(
    settings: BuildSettings, *, model_factory: ModelFactory | None = None, warn: Warn = lambda _: None
) -> BuildResult:
    """Run a whole build; user errors raise `BuildError` before anything is written to `settings.out`."""
    check_out_dir(settings)
    try:
        known = load_cultures(settings.cultures_file)
        cultures = {name: known[name] for name in select_cultures(settings.culture, known)}
        seeds = load_seeds(settings.seeds)
        scales = parse_scales(seeds, settings.seeds)
        seed_ids = {seed.q_id for seed in seeds}
        samples = load_samples(settings.samples, seed_ids, settings.seeds) if settings.samples else []
        opinions = (
            load_opinions(settings.culturepark, seed_ids, settings.seeds) if settings.culturepark else []
        )
        answers = load_countries(
            (country for countries in cultures.values() for country in countries),
            [seed.q_id for seed in seeds],
            [*settings.answers_dir, DEFAULT_ANSWERS_DIR],
        )
    except (CultureError, SeedFileError, SamplesFileError, OpinionsError, AnswersFileError) as exc:
        raise BuildError(str(exc)) from None
    if settings.samples and not samples:
        warn(f"samples file {settings.samples} holds no samples; building from the seeds alone")

    labels = compute_labels(cultures, seeds, scales, answers, settings.label)
    by_key = {(label.culture, label.q_id): label for label in labels}
    selected = select_opinions(opinions, cultures, by_key)
    if settings.culturepark and not selected.texts:
        warn(f"--culturepark {settings.culturepark} holds no opinions of {', '.join(cultures)}")
    if selected.mismatched:
        warn(describe_mismatches(selected.mismatched, by_key))
    example_set = build_examples(list(cultures), seeds, scales, samples, by_key, selected.texts)
    report_skips(example_set, warn)
    examples = example_set.examples
    if not examples:
        raise BuildError(f"no examples to write: no question has a valid answer for {', '.join(cultures)}")

    translation_failures = 0
    if settings.translate:
        examples, translation_failures = translate_examples(examples, settings, model_factory, warn)
        if not examples:
            raise BuildError(f"no examples to write: no prompt could be translated into {settings.translate}")

    examples = assign_splits(examples, settings.val_fraction)
    held_out = validation_questions([example.q_id for example in examples], settings.val_fraction)
    result = BuildResult(
        settings=settings,
        cultures=cultures,
        seeds=seeds,
        samples=samples,
        opinions=opinions,
        selected_opinions=selected,
        answers=answers,
        labels=labels,
        example_set=example_set,
        examples=examples,
        validation_q_ids=[seed.q_id for seed in seeds if seed.q_id in held_out],
        translation_failures=translation_failures,
        written=[],
    )
    write_output(result)
    return result


def write_output(result: BuildResult) -> None:
    out = result.settings.out
    # Not tempfile.mkdtemp: its private 0700 mode would stay on the published dataset.
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise BuildError(f"cannot write beside --out {out}: {exc}") from None
    try:
        write_jsonl(staging / LABELS_FILE, [label.model_dump(mode="json") for label in result.labels])
        result.written = [
            LABELS_FILE,
            *write_examples(result.examples, result.settings.format, staging),
            CARD_FILE,
        ]
        (staging / CARD_FILE).write_text(render_card(result), encoding="utf-8")
        publish(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildError(f"cannot write --out {out}: {exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
