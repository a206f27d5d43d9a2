"""What an evaluation leaves behind: results.json, report.md and two PNG plots.

`EvalResults` is the whole outcome in one validated structure (it round-trips through results.json);
`build_results` computes it from the gold labels and parsed answers of every model on every task, and
`write_report` renders it. The first model is the baseline every other model is compared with.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from evals.metrics import (
    TaskScore,
    accuracy,
    bootstrap_samples,
    invalid_rate,
    macro_f1,
    percentile_interval,
)

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
BARS_FILE = "culture_macro_f1.png"
RADAR_FILE = "culture_radar.png"


class CultureScore(BaseModel):
    model: str
    culture: str
    macro_f1: float = Field(description="unweighted mean of the culture's task macro-F1s")
    ci: tuple[float, float] = Field(description="bootstrap interval, items resampled within each task")
    tasks: int = Field(description="how many tasks the mean is over")


class Difference(BaseModel):
    model: str
    baseline: str = Field(description="the first model; diff is model - baseline")
    culture: str
    task: str | None = Field(default=None, description="None for the culture's mean over its tasks")
    diff: float
    ci: tuple[float, float] = Field(description="paired bootstrap interval: the same items for both")


class EvalResults(BaseModel):
    models: list[str] = Field(description="report columns in this order; the first is the baseline")
    tasks: list[TaskScore]
    cultures: list[CultureScore]
    differences: list[Difference] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="tasks whose data file is missing")
    level: float = Field(default=0.95, description="the intervals' confidence level")
    samples: int = Field(default=1000, description="bootstrap resamples behind every interval")


@dataclass(frozen=True)
class TaskRun:
    """One task's gold labels and every model's parsed answers on the same items (None = invalid)."""

    task: str
    culture: str
    labels: Sequence[str]
    gold: Sequence[str]
    preds: Mapping[str, Sequence[str | None]]


def build_results(
    models: Sequence[str],
    runs: Sequence[TaskRun],
    *,
    skipped: Sequence[str] = (),
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> EvalResults:
    """Scores, culture means and differences from the first model.

    Each task is resampled once, with a seed from `seed` and the task's name (so adding a task changes
    no other task's interval), and every model is scored on those same resamples: a task's interval,
    its paired differences (b's resampled scores minus a's) and its share of the culture intervals
    (resample-wise means over the culture's tasks) all come from them, as evals.metrics describes.
    """
    if not models:
        raise ValueError("no model to report on")
    for run in runs:
        if missing := [m for m in models if m not in run.preds]:
            raise ValueError(f"task {run.task} has no answers from {', '.join(missing)}")
    resampled = {
        (run.task, model): bootstrap_samples(
            run.gold,
            run.preds[model],
            run.labels,
            samples=samples,
            seed=(seed, zlib.crc32(run.task.encode())),
        )
        for run in runs
        for model in models
    }
    tasks = [
        TaskScore(
            task=run.task,
            culture=run.culture,
            model=model,
            n=len(run.gold),
            macro_f1=macro_f1(run.gold, run.preds[model], run.labels),
            ci=percentile_interval(resampled[run.task, model], level),
            accuracy=accuracy(run.gold, run.preds[model], run.labels),
            invalid_rate=invalid_rate(run.preds[model]),
        )
        for run in runs
        for model in models
    ]
    point = {(s.task, s.model): s.macro_f1 for s in tasks}
    cultures, differences = [], []
    baseline = models[0]
    for culture in sorted({run.culture for run in runs}):
        members = [run.task for run in runs if run.culture == culture]
        for model in models:
            spread = np.mean([resampled[task, model] for task in members], axis=0)
            cultures.append(
                CultureScore(
                    model=model,
                    culture=culture,
                    macro_f1=float(np.mean([point[task, model] for task in members])),
                    ci=percentile_interval(spread, level),
                    tasks=len(members),
                )
            )
        for model in models[1:]:
            scopes = [(None, members), *((task, [task]) for task in members)]
            for task, among in scopes:
                diff = np.mean([point[t, model] - point[t, baseline] for t in among])
                spread = np.mean([resampled[t, model] - resampled[t, baseline] for t in among], axis=0)
                differences.append(
                    Difference(
                        model=model,
                        baseline=baseline,
                        culture=culture,
                        task=task,
                        diff=float(diff),
                        ci=percentile_interval(spread, level),
                    )
                )
    return EvalResults(
        models=list(models),
        tasks=tasks,
        cultures=cultures,
        differences=differences,
        skipped=list(skipped),
        level=level,
        samples=samples,
    )


def write_report(results: EvalResults, out_dir: Path) -> list[Path]:
    """results.json, report.md and the plots in `out_dir`; the paths written, in that order. The radar
    needs three cultures to be a shape and is left out below that."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / RESULTS_FILE, out_dir / REPORT_FILE]
    written[0].write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
    written[1].write_text(render_markdown(results), encoding="utf-8")
    if results.cultures:
        written.append(plot_culture_bars(results, out_dir / BARS_FILE))
    if len(_cultures(results)) >= 3:
        written.append(plot_culture_radar(results, out_dir / RADAR_FILE))
    return written


def load_results(path: Path) -> EvalResults:
    return EvalResults.model_validate_json(path.read_text(encoding="utf-8"))


def render_markdown(results: EvalResults) -> str:
    level = f"{results.level * 100:g} %"
    lines = [
        "# Evaluation report",
        "",
        f"Macro-F1 over each task's label set (invalid answers count as wrong) with {level} bootstrap "
        f"intervals ({results.samples} resamples of the items). A culture's score is the unweighted mean "
        "of its tasks; its interval resamples items within each task.",
        "",
        *culture_table(results),
        "",
        *task_table(results),
    ]
    if len(results.models) > 1:
        lines += ["", *difference_table(results)]
    if results.skipped:
        lines += ["", f"Skipped ({len(results.skipped)}, data file missing): {', '.join(results.skipped)}."]
    return "\n".join(lines) + "\n"


def culture_table(results: EvalResults) -> list[str]:
    by_key = {(c.culture, c.model): c for c in results.cultures}
    rows = [["Culture", "Tasks", *results.models]]
    for culture in _cultures(results):
        cells = [by_key.get((culture, model)) for model in results.models]
        tasks = next(c.tasks for c in cells if c is not None)
        rows.append([culture, str(tasks), *(_with_ci(c.macro_f1, c.ci) if c else "–" for c in cells)])
    return ["## Per culture (macro-F1)", "", *_table(rows, right={1})]


def task_table(results: EvalResults) -> list[str]:
    rows = [["Culture", "Task", "Model", "n", "Macro-F1 [CI]", "Accuracy", "Invalid"]]
    column = {model: i for i, model in enumerate(results.models)}
    for s in sorted(
        results.tasks, key=lambda s: (s.culture, s.task, column.get(s.model, len(column)), s.model)
    ):
        f1 = _with_ci(s.macro_f1, s.ci, s.sd)
        rows.append(
            [s.culture, s.task, s.model, str(s.n), f1, f"{s.accuracy:.3f}", f"{s.invalid_rate * 100:.1f} %"]
        )
    return ["## Per task", "", *_table(rows, right={3, 5, 6})]


def difference_table(results: EvalResults) -> list[str]:
    baseline, others = results.models[0], results.models[1:]
    by_key = {(d.culture, d.task, d.model): d for d in results.differences}
    scopes = sorted(
        {(d.culture, d.task) for d in results.differences}, key=lambda k: (k[0], k[1] is not None, k[1])
    )
    rows = [["Culture", "Task", *(f"{m} − {baseline}" for m in others)]]
    for culture, task in scopes:
        cells = [by_key.get((culture, task, model)) for model in others]
        rows.append(
            [culture, task or "(mean)", *(_signed_with_ci(d.diff, d.ci) if d else "–" for d in cells)]
        )
    return [f"## Differences from {baseline} (macro-F1, paired bootstrap)", "", *_table(rows)]


def plot_culture_bars(results: EvalResults, path: Path) -> Path:
    """Grouped bars: one group per culture, one bar per model, the interval as an error bar."""
    from matplotlib.figure import Figure  # the object API draws to files without touching pyplot state

    cultures = _cultures(results)
    by_key = {(c.culture, c.model): c for c in results.cultures}
    x = np.arange(len(cultures))
    width = 0.8 / len(results.models)
    fig = Figure(figsize=(max(6.0, 1.1 * len(cultures) * max(1, len(results.models)) ** 0.5 + 2), 4.5))
    ax = fig.add_subplot()
    for i, model in enumerate(results.models):
        scores = [by_key.get((culture, model)) for culture in cultures]
        heights = np.array([s.macro_f1 if s else np.nan for s in scores])
        errors = np.array([[s.macro_f1 - s.ci[0], s.ci[1] - s.macro_f1] if s else [0, 0] for s in scores]).T
        ax.bar(
            x + (i - (len(results.models) - 1) / 2) * width,
            heights,
            width,
            yerr=np.clip(errors, 0, None),
            capsize=3,
            label=model,
        )
    ax.set_xticks(x, cultures, rotation=30, ha="right")
    ax.set_ylabel("macro-F1")
    ax.set_ylim(0, 1)
    ax.set_title(f"Macro-F1 per culture ({results.level * 100:g} % intervals)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_culture_radar(results: EvalResults, path: Path) -> Path:
    """One polygon per model over the cultures' macro-F1."""
    from matplotlib.figure import Figure

    cultures = _cultures(results)
    by_key = {(c.culture, c.model): c.macro_f1 for c in results.cultures}
    angles = np.linspace(0, 2 * np.pi, len(cultures), endpoint=False)
    closed = np.append(angles, angles[0])
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="polar")
    for model in results.models:
        values = [by_key.get((culture, model), 0.0) for culture in cultures]
        ax.plot(closed, [*values, values[0]], label=model)
        ax.fill(closed, [*values, values[0]], alpha=0.1)
    ax.set_xticks(angles, cultures)
    ax.set_ylim(0, 1)
    ax.set_rlabel_position(np.degrees(angles[1]) / 2)  # radial ticks between two cultures' spokes
    ax.set_title("Macro-F1 across cultures")
    ax.legend(loc="upper left", bbox_to_anchor=(1.05, 1.0), fontsize="small")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _cultures(results: EvalResults) -> list[str]:
    return sorted({c.culture for c in results.cultures})


def _with_ci(value: float, ci: tuple[float, float], sd: float | None = None) -> str:
    spread = f" ± {sd:.3f}" if sd is not None else ""
    return f"{value:.3f}{spread} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _signed_with_ci(value: float, ci: tuple[float, float]) -> str:
    return f"{value:+.3f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _table(rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = ["---:" if i in right else "---" for i in range(len(rows[0]))]
    return [row(rows[0]), "|" + "|".join(rule) + "|", *(row(r) for r in rows[1:])]
