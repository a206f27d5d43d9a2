"""Command line: `python cli.py augment|rejudge|culturepark|evaluate|build-dataset|train|pipeline|serve ...`.

This file only parses and dispatches: each command's wiring lives in its own package (commands/,
builders/, trainers/). `main(argv) -> int` is what tests call. User errors print one line and return 2,
with no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from commands.errors import EXIT_USAGE, UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr instead of usage plus message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from builders.command import add_build_dataset_parser
    from commands import augment, culturepark, evaluate, pipeline, rejudge, serve
    from trainers.command import add_train_parser

    parser = OneLineParser(prog="cli.py", description="Culture-aware LLM data generation and fine-tuning.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    augment.add_parser(subparsers)
    rejudge.add_parser(subparsers)
    culturepark.add_parser(subparsers)
    evaluate.add_parser(subparsers)
    add_build_dataset_parser(subparsers)
    add_train_parser(subparsers)
    pipeline.add_parser(subparsers)
    serve.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except UserError as exc:
        from agents.providers.endpoints import redact_urls

        # Messages may quote a server's URL or answer: credentials never reach the terminal.
        print(f"error: {redact_urls(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
