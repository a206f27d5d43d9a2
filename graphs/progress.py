"""What a person sees while a run goes: a progress bar, then a one-screen summary."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agents.providers.endpoints import redact_urls
from agents.providers.resilience import UsageMeter


class RunProgress:
    def __init__(
        self,
        total: int,
        meter: UsageMeter,
        *,
        unit: str = "seeds",
        kept: Callable[[Any], int] = lambda outcome: 0,
        enabled: bool = True,
    ) -> None:
        self.meter = meter
        self.kept = 0
        self.enabled = enabled
        self._kept_of = kept
        self._progress = Progress(
            TextColumn(unit),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept {task.fields[kept]}  calls {task.fields[calls]}  errors {task.fields[errors]}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            disable=not enabled,
        )
        self._task = self._progress.add_task(unit, total=total, kept=0, calls=0, errors=0)

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def item_done(self, outcome: Any) -> None:
        self.kept += self._kept_of(outcome)
        self._progress.update(
            self._task, advance=1, kept=self.kept, calls=self.meter.calls, errors=self.meter.errors
        )


def print_summary(
    title: str,
    rows: Sequence[tuple[str, str]],
    meter: UsageMeter,
    files: Sequence[Path],
    failures: Sequence[tuple[str, str]] = (),
) -> None:
    """A table of the run's own `rows`, its calls per step and its files, then the first failures."""
    console = Console()
    table = Table(title=title, show_header=False)
    for name, value in rows:
        table.add_row(name, value)
    for step, usage in sorted(meter.steps.items()):
        table.add_row(
            f"{step} calls",
            f"{usage.calls} ok, {usage.retries} retried, {usage.failures} failed; "
            f"tokens in {usage.input_tokens} out {usage.output_tokens}",
        )
    for path in files:
        table.add_row(path.stem, str(path))
    console.print(table)
    for what, failure in failures[:5]:
        # A failure quotes the provider's error: brackets in it are text, not markup.
        console.print(f"[red]{escape(what)} failed:[/red] {escape(redact_urls(failure))}")
