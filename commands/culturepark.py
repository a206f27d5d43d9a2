"""`python cli.py culturepark`: CulturePark dialogues on the shared runner (wired in below)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    pass
