"""The report renders a results structure as results.json, markdown tables and PNG plots."""

from pathlib import Path

import pytest
from PIL import Image

from evals.metrics import TaskScore, macro_f1
from evals.report import (
    CultureScore,
    Difference,
    EvalResults,
    TaskRun,
    build_results,
    load_results,
    render_markdown,
    write_report,
)


def tiny() -> EvalResults:
    return EvalResults(
        models=["base", "ft"],
        tasks=[
            TaskScore("offensive_detect", "Arabic", "base", 100, 0.6123, (0.551, 0.672), 0.64, 0.02),
            TaskScore("offensive_detect", "Arabic", "ft", 100, 0.7, (0.6, 0.8), 0.72, 0.0, sd=0.0123, runs=3),
            TaskScore("spam_detect", "Chinese", "base", 50, 0.5, (0.4, 0.6), 0.5, 0.1),
            TaskScore("spam_detect", "Chinese", "ft", 50, 0.45, (0.35, 0.55), 0.46, 0.5),
            TaskScore("hate_detect", "Korean", "base", 20, 0.3, (0.1, 0.5), 0.4, 0.0),
            TaskScore("hate_detect", "Korean", "ft", 20, 0.35, (0.15, 0.55), 0.45, 0.0),
        ],
        cultures=[
            CultureScore(model="base", culture="Arabic", macro_f1=0.6123, ci=(0.551, 0.672), tasks=1),
            CultureScore(model="ft", culture="Arabic", macro_f1=0.7, ci=(0.6, 0.8), tasks=1),
            CultureScore(model="base", culture="Chinese", macro_f1=0.5, ci=(0.4, 0.6), tasks=1),
            CultureScore(model="ft", culture="Chinese", macro_f1=0.45, ci=(0.35, 0.55), tasks=1),
            CultureScore(model="base", culture="Korean", macro_f1=0.3, ci=(0.1, 0.5), tasks=1),
            CultureScore(model="ft", culture="Korean", macro_f1=0.35, ci=(0.15, 0.55), tasks=1),
        ],
        differences=[
            Difference(model="ft", baseline="base", culture="Arabic", diff=0.0877, ci=(0.01, 0.16)),
            Difference(
                model="ft",
                baseline="base",
                culture="Arabic",
                task="offensive_detect",
                diff=0.0877,
                ci=(0.01, 0.16),
            ),
            Difference(model="ft", baseline="base", culture="Chinese", diff=-0.05, ci=(-0.12, 0.02)),
        ],
        skipped=["Arabic/hate_detect_osact4", "Greek/offensive_detect"],
    )


def section(markdown: str, title: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index(title) + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_per_culture_table_has_cultures_as_rows_and_models_as_columns():
    assert section(render_markdown(tiny()), "## Per culture (macro-F1)") == [
        "| Culture | Tasks | base | ft |",
        "|---|---:|---|---|",
        "| Arabic | 1 | 0.612 [0.55, 0.67] | 0.700 [0.60, 0.80] |",
        "| Chinese | 1 | 0.500 [0.40, 0.60] | 0.450 [0.35, 0.55] |",
        "| Korean | 1 | 0.300 [0.10, 0.50] | 0.350 [0.15, 0.55] |",
    ]


def test_per_task_table_shows_n_interval_accuracy_and_invalid_share():
    assert section(render_markdown(tiny()), "## Per task") == [
        "| Culture | Task | Model | n | Macro-F1 [CI] | Accuracy | Invalid |",
        "|---|---|---|---:|---|---:|---:|",
        "| Arabic | offensive_detect | base | 100 | 0.612 [0.55, 0.67] | 0.640 | 2.0 % |",
        "| Arabic | offensive_detect | ft | 100 | 0.700 ± 0.012 [0.60, 0.80] | 0.720 | 0.0 % |",
        "| Chinese | spam_detect | base | 50 | 0.500 [0.40, 0.60] | 0.500 | 10.0 % |",
        "| Chinese | spam_detect | ft | 50 | 0.450 [0.35, 0.55] | 0.460 | 50.0 % |",
        "| Korean | hate_detect | base | 20 | 0.300 [0.10, 0.50] | 0.400 | 0.0 % |",
        "| Korean | hate_detect | ft | 20 | 0.350 [0.15, 0.55] | 0.450 | 0.0 % |",
    ]


def test_differences_from_the_first_model_and_skipped_tasks():
    markdown = render_markdown(tiny())
    assert section(markdown, "## Differences from base (macro-F1, paired bootstrap)") == [
        "| Culture | Task | ft − base |",
        "|---|---|---|",
        "| Arabic | (mean) | +0.088 [+0.01, +0.16] |",
        "| Arabic | offensive_detect | +0.088 [+0.01, +0.16] |",
        "| Chinese | (mean) | -0.050 [-0.12, +0.02] |",
    ]
    assert markdown.rstrip().endswith(
        "Skipped (2, data file missing): Arabic/hate_detect_osact4, Greek/offensive_detect."
    )


def test_a_single_model_report_has_no_difference_table():
    full = tiny()
    results = full.model_copy(
        update={
            "models": ["base"],
            "tasks": [t for t in full.tasks if t.model == "base"],
            "cultures": [c for c in full.cultures if c.model == "base"],
            "differences": [],
            "skipped": [],
        }
    )
    markdown = render_markdown(results)
    assert "## Differences" not in markdown and "Skipped" not in markdown


def test_write_report_writes_json_markdown_and_valid_pngs(tmp_path: Path):
    paths = write_report(tiny(), tmp_path / "out")
    assert [p.name for p in paths] == [
        "results.json",
        "report.md",
        "culture_macro_f1.png",
        "culture_radar.png",
    ]
    for png in paths[2:]:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 300
            image.verify()
    assert load_results(paths[0]) == tiny()
    assert paths[1].read_text(encoding="utf-8") == render_markdown(tiny())


def test_the_radar_needs_three_cultures(tmp_path: Path):
    two = tiny().model_copy(
        update={
            "tasks": [t for t in tiny().tasks if t.culture != "Korean"],
            "cultures": [c for c in tiny().cultures if c.culture != "Korean"],
        }
    )
    assert [p.name for p in write_report(two, tmp_path)] == [
        "results.json",
        "report.md",
        "culture_macro_f1.png",
    ]


def test_build_results_scores_every_model_on_the_same_items():
    gold = ["NOT", "NOT", "OFF", "OFF"]
    runs = [
        TaskRun(
            "t1", "Arabic", ["NOT", "OFF"], gold, {"base": ["NOT", "OFF", "OFF", None], "ft": list(gold)}
        ),
        TaskRun("t2", "Arabic", ["NOT", "OFF"], gold, {"base": list(gold), "ft": list(gold)}),
    ]
    results = build_results(["base", "ft"], runs, skipped=["gone"], samples=200)
    base_t1 = macro_f1(gold, ["NOT", "OFF", "OFF", None], ["NOT", "OFF"])
    assert [(s.task, s.model, s.macro_f1) for s in results.tasks] == [
        ("t1", "base", pytest.approx(base_t1)),
        ("t1", "ft", 1.0),
        ("t2", "base", 1.0),
        ("t2", "ft", 1.0),
    ]
    culture = {c.model: c for c in results.cultures}
    assert culture["base"].macro_f1 == pytest.approx((base_t1 + 1) / 2) and culture["base"].tasks == 2
    diffs = {d.task: d for d in results.differences}
    assert diffs[None].diff == pytest.approx((1 - base_t1) / 2)
    assert (diffs["t2"].diff, *diffs["t2"].ci) == (0.0, 0.0, 0.0)
    assert results.skipped == ["gone"]


def test_build_results_names_a_model_without_answers():
    run = TaskRun("t1", "Arabic", ["A"], ["A"], {"base": ["A"]})
    with pytest.raises(ValueError, match="task t1 has no answers from ft"):
        build_results(["base", "ft"], [run])
