"""What a person sees while a run goes: a progress bar, then a one-screen summary."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agents.endpoints import redact_urls
from agents.resilience import UsageMeter
from graphs.runner import RunReport, SeedOutcome


class RunProgress:
    def __init__(self, total: int, meter: UsageMeter, *, enabled: bool = True) -> None:
        self.meter = meter
        self.kept = 0
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("seeds"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept {task.fields[kept]}  calls {task.fields[calls]}  errors {task.fields[errors]}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            disable=not enabled,
        )
        self._task = self._progress.add_task("augment", total=total, kept=0, calls=0, errors=0)

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def seed_done(self, outcome: SeedOutcome) -> None:
        self.kept += len(outcome.samples)
        self._progress.update(
            self._task, advance=1, kept=self.kept, calls=self.meter.calls, errors=self.meter.errors
        )


def print_summary(report: RunReport, meter: UsageMeter, out: Path) -> None:
    console = Console()
    yields = [len(o.samples) for o in report.outcomes if not o.failure]
    table = Table(title=f"augment: {report.status}", show_header=False)
    table.add_row("seeds", f"{len(report.outcomes)} ({len(report.failed)} failed)")
    table.add_row("seeds with samples", str(sum(1 for y in yields if y)))
    table.add_row("samples kept", str(report.samples))
    if yields:
        table.add_row(
            "per seed (min / median / max)", f"{min(yields)} / {statistics.median(yields):g} / {max(yields)}"
        )
    for step, usage in sorted(meter.steps.items()):
        table.add_row(
            f"{step} calls",
            f"{usage.calls} ok, {usage.retries} retried, {usage.failures} failed; "
            f"tokens in {usage.input_tokens} out {usage.output_tokens}",
        )
    table.add_row("samples", str(out / "samples.jsonl"))
    table.add_row("manifest", str(out / "manifest.json"))
    console.print(table)
    for outcome in report.failed[:5]:
        # A failure quotes the provider's error: brackets in it are text, not markup.
        console.print(
            f"[red]seed {outcome.seed.q_id} failed:[/red] {escape(redact_urls(outcome.failure or ''))}"
        )
