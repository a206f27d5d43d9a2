"""The `build-dataset` sub-command: flags in, `builders.build.build_dataset` run, one-line errors out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agents.providers.endpoints import redact_urls
from builders.build import BuildError, BuildSettings, ModelFactory, build_dataset
from builders.formats import FORMATS, by_split
from builders.labels import LabelMethod
from builders.translate import ChatModel

EXAMPLE = (
    "python cli.py build-dataset --culture Arabic --samples runs/X/samples.jsonl --format openai --out DIR"
)


def _help(field: str) -> str:
    return BuildSettings.model_fields[field].description or ""


def add_build_dataset_parser(subparsers: Any) -> None:
    """Register `build-dataset` on the CLI's sub-parsers; the flags mirror `BuildSettings`."""
    parser = subparsers.add_parser(
        "build-dataset",
        help="Build a culture-labelled fine-tuning set from seeds, augmented samples and WVS answers.",
        description=f"Build a culture-labelled fine-tuning set. Example: {EXAMPLE}",
    )
    parser.add_argument("--culture", required=True, help=_help("culture"))
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help=_help("out"))
    parser.add_argument("--samples", type=Path, metavar="FILE", help=_help("samples"))
    parser.add_argument("--culturepark", type=Path, metavar="DIR", help=_help("culturepark"))
    parser.add_argument(
        "--seeds", type=Path, metavar="FILE", help=f"{_help('seeds')} Default: data/wvs/seeds.jsonl."
    )
    parser.add_argument("--format", choices=FORMATS, default="openai", help=_help("format"))
    parser.add_argument(
        "--label", choices=[m.value for m in LabelMethod], default="mode", help=_help("label")
    )
    parser.add_argument("--val-fraction", type=float, default=0.0, metavar="F", help=_help("val_fraction"))
    parser.add_argument(
        "--answers-dir", type=Path, action="append", default=[], metavar="DIR", help=_help("answers_dir")
    )
    parser.add_argument("--cultures-file", type=Path, metavar="FILE", help=_help("cultures_file"))
    parser.add_argument("--translate", metavar="LANGUAGE", help=_help("translate"))
    parser.add_argument("--translate-model", metavar="SPEC", help=_help("translate_model"))
    parser.add_argument("--base-url", metavar="URL", help=_help("base_url"))
    parser.add_argument("--overwrite", action="store_true", help=_help("overwrite"))
    parser.set_defaults(handler=run_build_dataset)


def settings_from_args(args: argparse.Namespace) -> BuildSettings:
    values = {
        "culture": args.culture,
        "out": args.out,
        "samples": args.samples,
        "culturepark": args.culturepark,
        "format": args.format,
        "label": args.label,
        "val_fraction": args.val_fraction,
        "answers_dir": args.answers_dir,
        "cultures_file": args.cultures_file,
        "translate": args.translate,
        "translate_model": args.translate_model,
        "base_url": args.base_url,
        "overwrite": args.overwrite,
    }
    if args.seeds is not None:
        values["seeds"] = args.seeds
    try:
        return BuildSettings(**values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = problem["loc"][0] if problem["loc"] else None
        flag = f"--{str(field).replace('_', '-')}: " if field else ""
        raise BuildError(f"{flag}{problem['msg'].removeprefix('Value error, ')}") from None


def default_model_factory(base_url: str | None) -> ModelFactory:
    """Specs resolved by the project's one model factory, with its rate limits and transport retries."""

    def create(spec: str) -> ChatModel:
        # Imported on use: only --translate needs the model stack, and it is slow to import.
        from agents.providers.factory import ModelServices, create_chat_model

        return create_chat_model(spec, services=ModelServices(base_url=base_url), flag="--translate-model")

    return create


def run_build_dataset(args: argparse.Namespace, *, model_factory: ModelFactory | None = None) -> int:
    """Run `build-dataset`; a `BuildError` is a `UserError`, which `cli.main` prints as one line (with
    credentials in quoted URLs hidden) and turns into exit status 2."""
    settings = settings_from_args(args)
    result = build_dataset(
        settings,
        model_factory=model_factory or default_model_factory(settings.base_url),
        warn=lambda message: print(f"warning: {redact_urls(message)}", file=sys.stderr),
    )
    sizes = ", ".join(f"{split} {len(found)}" for split, found in by_split(result.examples).items())
    print(
        f"wrote {len(result.examples)} examples ({sizes}) for {', '.join(result.cultures)} to {settings.out}"
    )
    return 0
