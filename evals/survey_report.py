"""Scores, report and plots of the survey suites (`evaluate --suite wvs|hofstede`), from the answers.

- wvs: per model and culture, every scorable question's model distribution (option probabilities, or
  the shares of the parsed sampled answers) against the survey's; mode match, scale error and
  Jensen-Shannon divergence per question and their means over questions with bootstrap intervals
  (evals/alignment.py). The questions furthest from the survey go to `weak_questions/` as seed files
  for `augment --seeds`.
- hofstede: per model and culture, the mean answer to each VSM 2013 item, the six indices by the
  manual's formulas, and their errors against the culture's countries' scores, with the RMS over the
  dimensions the reference has (evals/hofstede.py).

Everything is computed from answers.jsonl, so a resumed run reports what an uninterrupted one would.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals import alignment, hofstede
from graphs.survey import PROBABILITIES

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
WVS_PLOT = "wvs_alignment.png"
HOFSTEDE_PLOT = "hofstede_dimensions.png"
WEAK_DIR = "weak_questions"


@dataclass(frozen=True)
class WvsSuite:
    questions: dict[str, alignment.CultureQuestions]  # by culture
    weak: int = 10


@dataclass(frozen=True)
class HofstedeSuite:
    items: tuple[hofstede.VsmItem, ...]
    references: dict[str, dict[str, float]]  # culture -> dimension -> the countries' mean score
    countries: dict[str, tuple[str, ...]]  # culture -> the score rows used
    constant: float = hofstede.DEFAULT_CONSTANT


def _by_question(outcomes: Sequence[Any], job: Any) -> dict[tuple[int, str, str], list[Any]]:
    """Answers grouped by (model column, culture, question id)."""
    grouped: dict[tuple[int, str, str], list[Any]] = defaultdict(list)
    for outcome in outcomes:
        question = job.context.questions[outcome.item.question]
        grouped[(outcome.item.model, question.culture, question.question)].append(outcome)
    return grouped


def _distribution(answers: Sequence[Any], codes: Sequence[int]) -> tuple[dict[int, float] | None, int]:
    """(the model's distribution over `codes`, unparsable answers) from one question's answers."""
    probabilities = [a for a in answers if a.item.sample == PROBABILITIES]
    if probabilities:
        return dict(probabilities[0].probabilities), 0
    parsed = [a.code for a in sorted(answers, key=lambda a: a.item.sample)]
    valid = [code for code in parsed if code is not None]
    if not valid:
        return None, len(parsed)
    return {code: valid.count(code) / len(valid) for code in codes}, len(parsed) - len(valid)


def score_wvs(outcomes: Sequence[Any], job: Any, suite: WvsSuite, *, seed: int) -> dict[str, Any]:
    grouped = _by_question(outcomes, job)
    models: list[dict[str, Any]] = []
    for column, name in enumerate(job.model_names):
        cultures = []
        for culture, questions in suite.questions.items():
            answers = {}
            for question in questions.scorable:
                given = grouped.get((column, culture, question.q_id), [])
                if not given:  # not reached by a stopped run: nothing to score
                    answers[question.q_id] = alignment.ModelAnswer(None, 0)
                    continue
                distribution, invalid = _distribution(given, question.scale.codes)
                answers[question.q_id] = alignment.ModelAnswer(distribution, invalid)
            scored = alignment.score_culture(questions, answers, seed=seed)
            cultures.append(
                {
                    **scored.as_row(),
                    "questions": [score.as_row() for score in scored.scores],
                    "weak": alignment.weak_questions(scored.scores, culture, suite.weak)
                    if suite.weak and scored.scores
                    else [],
                }
            )
        models.append({"model": name, "column": column, "cultures": cultures})
    return {"suite": "wvs", "models": models}


def score_hofstede(outcomes: Sequence[Any], job: Any, suite: HofstedeSuite) -> dict[str, Any]:
    grouped = _by_question(outcomes, job)
    models: list[dict[str, Any]] = []
    for column, name in enumerate(job.model_names):
        cultures = []
        for culture, reference in suite.references.items():
            means: dict[int, float] = {}
            unparsable: dict[int, int] = {}
            for item in suite.items:
                given = grouped.get((column, culture, item_key(item)), [])
                if not given:
                    continue
                distribution, invalid = _distribution(given, tuple(item.options))
                unparsable[item.id] = invalid
                if distribution is not None:
                    means[item.id] = hofstede.item_means_from_distributions({item.id: distribution})[item.id]
            indices = hofstede.partial_vsm_indices(means, suite.constant)
            comparison = hofstede.compare(indices, reference)
            cultures.append(
                {
                    "culture": culture,
                    "countries": list(suite.countries[culture]),
                    "indices": {d: None if v is None else round(v, 2) for d, v in indices.items()},
                    "reference": {d: round(v, 2) for d, v in reference.items()},
                    "error": {d: round(v, 2) for d, v in comparison.signed_error.items()},
                    "rms": None if comparison.rms is None else round(comparison.rms, 2),
                    "compared": list(comparison.dimensions),
                    "not_in_model": list(comparison.not_in_model),
                    "item_means": {str(i): round(m, 4) for i, m in sorted(means.items())},
                    "unparsable": sum(unparsable.values()),
                    "unanswered_items": [i.id for i in suite.items if i.id not in means],
                }
            )
        models.append({"model": name, "column": column, "cultures": cultures})
    return {"suite": "hofstede", "models": models, "constant": suite.constant}


def item_key(item: hofstede.VsmItem) -> str:
    return f"vsm{item.id:02d}"


# --- writing ------------------------------------------------------------------------------------------


def write_survey_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """results.json, report.md, the plot and (wvs) the weak-question seed files; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / RESULTS_FILE, out_dir / REPORT_FILE]
    written[0].write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if results["suite"] == "wvs":
        written[1].write_text(render_wvs(results), encoding="utf-8")
        written.extend(_write_weak(results, out_dir))
        written.append(plot_wvs(results, out_dir / WVS_PLOT))
    else:
        written[1].write_text(render_hofstede(results), encoding="utf-8")
        written.append(plot_hofstede(results, out_dir / HOFSTEDE_PLOT))
    return written


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def _write_weak(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """weak_questions/<Culture>.jsonl for one model; weak_questions/<column>_<model>/<Culture>.jsonl for several."""
    written = []
    several = len(results["models"]) > 1
    for model in results["models"]:
        folder = out_dir / WEAK_DIR
        if several:
            folder = folder / f"{model['column']}_{_slug(model['model'])}"
        for culture in model["cultures"]:
            if culture["weak"]:
                path = folder / f"{culture['culture']}.jsonl"
                alignment.write_weak_questions(path, culture["weak"])
                written.append(path)
    return written


def _average(cell: Mapping[str, Any] | None, percent: bool = False) -> str:
    if cell is None:
        return "-"
    low, high = cell["ci"]
    if percent:
        return f"{100 * cell['value']:.0f} % [{100 * low:.0f}, {100 * high:.0f}]"
    return f"{cell['value']:.3f} [{low:.2f}, {high:.2f}]"


def render_wvs(results: dict[str, Any]) -> str:
    lines = [
        "# WVS alignment",
        "",
        "Each culture's WVS seed questions, asked as the culture's chatbot (the fine-tuning prompt), against "
        "the distribution of the survey's valid answers of its countries. Mode match: the model's top answer is "
        "the survey's most frequent one. Scale error: |expected answer - survey's expected answer| over the "
        "scale's span (0..1). JS: Jensen-Shannon divergence of the two distributions (base 2, 0..1). Means over "
        "questions with 95 % bootstrap intervals (questions resampled).",
        "",
        "| Culture | Model | Scored | Mode match | Scale error | JS divergence | Skipped (never asked) | No valid answer |",
        "|---|---|---:|---|---|---|---:|---:|",
    ]
    for culture in _wvs_cultures(results):
        for model in results["models"]:
            row = next(c for c in model["cultures"] if c["culture"] == culture)
            lines.append(
                f"| {culture} | {model['model']} | {row['scored']} | {_average(row['mode_match'], percent=True)} "
                f"| {_average(row['scale_error'])} | {_average(row['js_divergence'])} | {len(row['skipped'])} "
                f"| {len(row['unanswered'])} |"
            )
    skipped = {
        c["culture"]: c["skipped"] for c in results["models"][0]["cultures"] if c["skipped"]
    }  # the same for every model
    if skipped:
        lines += ["", "Never asked in the culture's countries (not scored):"]
        lines += [f"- {culture}: {', '.join('Q' + q for q in qs)}" for culture, qs in skipped.items()]
    lines += [
        "",
        f"Questions furthest from the survey, as seed files for `augment --seeds`: `{WEAK_DIR}/`.",
        "",
    ]
    return "\n".join(lines)


def render_hofstede(results: dict[str, Any]) -> str:
    dims = hofstede.DIMENSIONS
    lines = [
        "# Hofstede VSM 2013",
        "",
        f"The 24 VSM 2013 items asked as the culture's person; item means from option probabilities or sampled "
        f"answers; the six indices by the manual's formulas (C = {results['constant']:g}); the reference is the "
        "mean score of the culture's countries (data/hofstede/culture_countries.json). RMS over the dimensions "
        "the reference has, so cultures with fewer scored dimensions stay comparable.",
        "",
        "| Culture | Model | " + " | ".join(d.upper() for d in dims) + " | RMS | Unparsable |",
        "|---|---|" + "---:|" * len(dims) + "---:|---:|",
    ]
    for position, first in enumerate(results["models"][0]["cultures"]):
        reference = [_number(first["reference"].get(d)) for d in dims]
        countries = ", ".join(first["countries"])
        lines.append(f"| {first['culture']} | survey ({countries}) | " + " | ".join(reference) + " | | |")
        for model in results["models"]:
            row = model["cultures"][position]
            cells = [_number(row["indices"].get(d)) for d in dims]
            lines.append(
                f"| {row['culture']} | {model['model']} | "
                + " | ".join(cells)
                + f" | {_number(row['rms'])} | {row['unparsable']} |"
            )
    lines.append("")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _wvs_cultures(results: dict[str, Any]) -> list[str]:
    return [c["culture"] for c in results["models"][0]["cultures"]]


def _legend_below(fig: Any, ax: Any, entries: int) -> None:
    """One legend for the figure, under the panels: inside a panel it covered bars (model labels
    with an adapter's path are long)."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=1 if entries > 2 else entries, fontsize="small",
               frameon=False)  # fmt: skip
    rows = entries if entries > 2 else 1
    fig.tight_layout(rect=(0, min(0.03 + 0.05 * rows, 0.4), 1, 1))


def plot_wvs(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cultures = _wvs_cultures(results)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(cultures) + 4), 4.5))
    width = 0.8 / len(results["models"])
    x = np.arange(len(cultures))
    for metric, ax, title in (
        ("mode_match", axes[0], "Mode match (higher is closer)"),
        ("js_divergence", axes[1], "Jensen-Shannon divergence (lower is closer)"),
    ):
        for index, model in enumerate(results["models"]):
            rows = {c["culture"]: c[metric] for c in model["cultures"]}
            values = [rows[c]["value"] if rows[c] else np.nan for c in cultures]
            low = [rows[c]["value"] - rows[c]["ci"][0] if rows[c] else 0 for c in cultures]
            high = [rows[c]["ci"][1] - rows[c]["value"] if rows[c] else 0 for c in cultures]
            ax.bar(x + index * width, values, width, yerr=[low, high], capsize=3, label=model["model"])
        ax.set_xticks(x + width * (len(results["models"]) - 1) / 2, cultures, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(title, fontsize="medium")
    _legend_below(fig, axes[0], len(results["models"]))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_hofstede(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    dims = hofstede.DIMENSIONS
    cultures = [c["culture"] for c in results["models"][0]["cultures"]]
    columns = min(3, len(cultures))
    rows = -(-len(cultures) // columns)
    # At least 6.4 inches wide, so the title fits over a single culture's panel.
    fig, axes = plt.subplots(
        rows, columns, figsize=(max(6.4, 4.2 * columns), 3.2 * rows + 0.8), squeeze=False
    )
    series = 1 + len(results["models"])
    width = 0.8 / series
    x = np.arange(len(dims))
    for position, culture in enumerate(cultures):
        ax = axes[position // columns][position % columns]
        first = next(c for c in results["models"][0]["cultures"] if c["culture"] == culture)
        reference = [first["reference"].get(d, np.nan) for d in dims]
        ax.bar(x, reference, width, color="0.55", label="survey")
        for index, model in enumerate(results["models"], start=1):
            row = next(c for c in model["cultures"] if c["culture"] == culture)
            values = [np.nan if row["indices"].get(d) is None else row["indices"][d] for d in dims]
            ax.bar(x + index * width, values, width, label=model["model"])
        ax.set_xticks(x + width * (series - 1) / 2, [d.upper() for d in dims])
        ax.set_title(culture)
        ax.axhline(0, color="black", linewidth=0.5)
    for position in range(len(cultures), rows * columns):
        axes[position // columns][position % columns].axis("off")
    fig.suptitle("Hofstede dimensions: survey vs model (VSM 2013 formulas)")
    _legend_below(fig, axes[0][0], series)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def score_and_report_survey(
    outcomes, job, out_dir: Path, *, suite: WvsSuite | HofstedeSuite, seed: int
) -> dict:
    results = (
        score_wvs(outcomes, job, suite, seed=seed)
        if isinstance(suite, WvsSuite)
        else score_hofstede(outcomes, job, suite)
    )
    write_survey_report(results, out_dir)
    return summary(results)


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The manifest's short form of the results (the full ones are in results.json)."""
    short = []
    for model in results["models"]:
        for row in model["cultures"]:
            if results["suite"] == "wvs":
                short.append(
                    {
                        "model": model["model"],
                        "culture": row["culture"],
                        "scored": row["scored"],
                        **{m: row[m] for m in ("mode_match", "scale_error", "js_divergence")},
                    }
                )
            else:
                short.append({"model": model["model"], "culture": row["culture"], "rms": row["rms"]})
    return {"suite": results["suite"], "cultures": short}
