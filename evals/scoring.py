"""From an evaluate run's answers to its scores, report and plots.

Every model answered the same items, so the predictions line up item by item: each task becomes one
`TaskRun` (gold labels and each model's labels in the same order) and `evals.report.build_results`
scores them all with shared bootstrap resamples. With `--samples K`, intervals and differences come
from the first run of every item and each task's macro-F1 is the mean of the K runs, reported with
their sd: no best-of-runs or worst-of-runs selection.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from evals.metrics import macro_f1
from evals.report import EvalResults, TaskRun, build_results, write_report


def score_and_report(outcomes, job, out_dir: Path, *, seed: int = 0) -> dict[str, Any]:
    """Score `outcomes` (the evaluate job's answered cases), write results.json, report.md and the
    plots into `out_dir`, and return the per-culture summary the manifest keeps."""
    results = score(outcomes, job, seed=seed)
    write_report(results, out_dir)
    return summary(results)


def score(outcomes, job, *, seed: int = 0) -> EvalResults:
    names = job.model_names
    tasks = job.context.tasks
    # (task, sample) -> item id -> model column -> label
    answers: dict[tuple[str, int], dict[str, dict[int, str | None]]] = defaultdict(lambda: defaultdict(dict))
    gold: dict[str, dict[str, str]] = defaultdict(dict)
    for outcome in outcomes:
        case = outcome.item
        answers[(case.item.task, case.sample)][case.item.item_id][case.model] = outcome.label
        gold[case.item.task][case.item.item_id] = case.item.gold
    samples = 1 + max((case.sample for case in (o.item for o in outcomes)), default=0)
    runs, spread = [], {}
    for data in job.data:
        key = data.task.key
        # Only items every model answered in every run count, so all columns score the same items.
        ids = [
            item.item_id
            for item in data.items
            if all(len(answers[(key, k)].get(item.item_id, {})) == len(names) for k in range(samples))
        ]
        if not ids:
            continue
        labels = tasks[key].labels
        golds = [gold[key][i] for i in ids]

        def column(model: int, sample: int) -> list[str | None]:
            return [answers[(key, sample)][i][model] for i in ids]  # noqa: B023 (used at once)

        runs.append(
            TaskRun(key, tasks[key].culture, labels, golds, {n: column(m, 0) for m, n in enumerate(names)})
        )
        if samples > 1:
            for m, name in enumerate(names):
                scores = [macro_f1(golds, column(m, k), labels) for k in range(samples)]
                spread[(key, name)] = (statistics.fmean(scores), statistics.stdev(scores))
    results = build_results(names, runs, skipped=[t.key for t in job.missing], seed=seed)
    if spread:
        results.tasks = [
            replace(
                score,
                macro_f1=spread[(score.task, score.model)][0],
                sd=spread[(score.task, score.model)][1],
                runs=samples,
            )
            for score in results.tasks
        ]
    return results


def summary(results: EvalResults) -> dict[str, Any]:
    """Per culture and model: mean macro-F1 over the culture's tasks with its interval."""
    cultures: dict[str, dict[str, Any]] = defaultdict(dict)
    for score in results.cultures:
        cultures[score.culture][score.model] = {
            "macro_f1": round(score.macro_f1, 4),
            "ci": [round(score.ci[0], 4), round(score.ci[1], 4)],
            "tasks": score.tasks,
        }
    return {"models": results.models, "cultures": dict(cultures), "skipped": results.skipped}
