"""The pipeline's before/after report: OUT/report.md and the `results` of OUT/pipeline.json.

The report says, for one culture, how each stage went (status, attempts, seconds), what was generated
(augment's seeds, samples and LLM calls; the dataset's examples and held-out questions), what was
trained (steps and losses, or the OpenAI job and its fine-tuned model), and the base and fine-tuned
models side by side for each evaluate suite: WVS mode match, scale error and JS divergence with each
model's bootstrap interval; Hofstede indices beside the reference with their RMS distance; downstream
macro-F1 per task with the paired difference and its interval.

It lives in evals/ because it only reads what the stages wrote (their manifests, summary.json, the
OpenAI job record, each evaluate run's results.json); running the stages is commands/pipeline.py's
work. A stage that has not finished reads as None and is reported as not run yet, so a stopped or
interrupted pipeline gets a report of what is done so far.

The pipeline's settings, file names, stage names and record readers are commands/pipeline.py's own and
are imported from there; that module imports this one only when it finishes, so there is no import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from commands.pipeline import (
    REPORT,
    PipelineSettings,
    eval_stage,
    openai_job,
    read_json,
    stage_names,
)


def write_report(
    settings: PipelineSettings, out: Path, record: dict[str, Any], results: dict[str, Any]
) -> Path:
    """Render the report and replace OUT/report.md with it in one rename (a reader never sees half)."""
    temporary = out / (REPORT + ".tmp")
    temporary.write_text(render_report(settings, record, results), encoding="utf-8")
    os.replace(temporary, out / REPORT)
    return out / REPORT


# --- results: read from each stage's own outputs ------------------------------------------------------


def collect_results(settings: PipelineSettings, out: Path) -> dict[str, Any]:
    """Each stage's facts, keyed by stage name; None for a stage that has not finished."""
    results: dict[str, Any] = {
        "augment": augment_facts(out / "augment"),
        "dataset": dataset_facts(out / "dataset"),
        "train": train_facts(settings, out),
    }
    for suite in settings.suites:
        found = read_json(out / eval_stage(suite) / "results.json")
        manifest = read_json(out / eval_stage(suite) / "manifest.json") or {}
        if found is None or manifest.get("status") != "completed":
            results[eval_stage(suite)] = None
            continue
        read = {"wvs": wvs_facts, "hofstede": hofstede_facts, "downstream": downstream_facts}[suite]
        results[eval_stage(suite)] = read(found, settings.culture)
    return results


def augment_facts(run_dir: Path) -> dict[str, Any] | None:
    manifest = read_json(run_dir / "manifest.json")
    if manifest is None:
        return None
    counts = manifest.get("counts") or {}
    keep = (
        "seeds",
        "seeds_done",
        "seeds_failed",
        "seeds_with_samples",
        "samples",
        "llm_calls",
        "llm_calls_replayed",
    )
    return {
        "status": manifest.get("status"),
        "generator": manifest.get("generator"),
        "judge": manifest.get("judge"),
        **{key: counts.get(key) for key in keep},
    }


def _lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def dataset_facts(dataset_dir: Path) -> dict[str, Any] | None:
    from evals.alignment import AlignmentDataError, read_validation_questions
    from storage.seeds import DEFAULT_SEEDS, SeedFileError, load_seeds

    if not (dataset_dir / "train.jsonl").is_file():
        return None
    try:
        held_out = [seed.q_id for seed in read_validation_questions(dataset_dir, load_seeds(DEFAULT_SEEDS))]
    except (AlignmentDataError, SeedFileError):
        held_out = []
    return {
        "train_examples": _lines(dataset_dir / "train.jsonl"),
        "validation_examples": _lines(dataset_dir / "validation.jsonl"),
        "validation_questions": held_out,
    }


def train_facts(settings: PipelineSettings, out: Path) -> dict[str, Any] | None:
    if settings.backend == "openai":
        job = openai_job(out)
        if job is None:
            return None
        keep = ("id", "status", "model", "fine_tuned_model", "trained_tokens", "last_metrics", "error")
        return {"backend": "openai", **{key: job.get(key) for key in keep}}
    summary = read_json(out / "train" / "summary.json")
    if summary is None:
        return None
    keep = (
        "base_model",
        "method",
        "steps",
        "epochs",
        "first_loss",
        "final_loss",
        "eval_loss",
        "train_examples",
        "validation_examples",
        "train_runtime_s",
        "adapter_dir",
        "model_dir",
    )
    return {"backend": "local", **{key: summary.get(key) for key in keep}}


def downstream_facts(results: dict[str, Any], culture: str) -> dict[str, Any]:
    """Per-culture macro-F1 of both columns and their paired difference, and the same per task."""
    base, tuned = (results.get("models") or [None, None])[:2]
    rows = {(r["model"], r["culture"]): r for r in results.get("cultures", [])}
    tasks = {(r["model"], r["task"]): r for r in results.get("tasks", [])}
    differences = {
        (d["culture"], d["task"]): d
        for d in results.get("differences", [])
        if d.get("model") == tuned and d.get("baseline") == base
    }

    def score(row: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if row is None else {"macro_f1": row["macro_f1"], "ci": row["ci"]}

    def difference(key: tuple[str, str | None]) -> dict[str, Any] | None:
        found = differences.get(key)
        return None if found is None else {"diff": found["diff"], "ci": found["ci"]}

    task_names = [
        r["task"] for r in results.get("tasks", []) if r["model"] == base and r["culture"] == culture
    ]
    return {
        "models": [base, tuned],
        "level": results.get("level"),
        "culture": {
            "base": score(rows.get((base, culture))),
            "tuned": score(rows.get((tuned, culture))),
            "difference": difference((culture, None)),
            "tasks": (rows.get((base, culture)) or {}).get("tasks"),
        },
        "tasks": [
            {
                "task": name,
                "n": tasks[(base, name)].get("n"),
                "base": score(tasks.get((base, name))),
                "tuned": score(tasks.get((tuned, name))),
                "difference": difference((culture, name)),
            }
            for name in task_names
        ],
    }


def _culture_entry(model: dict[str, Any], culture: str) -> dict[str, Any] | None:
    return next((c for c in model.get("cultures", []) if c.get("culture") == culture), None)


def wvs_facts(results: dict[str, Any], culture: str) -> dict[str, Any]:
    """Mode match, scale error and JS divergence of both columns, each with its interval."""
    columns = sorted(results.get("models", []), key=lambda m: m.get("column", 0))
    keep = ("scored", "invalid_answers", "mode_match", "scale_error", "js_divergence")
    facts = []
    for model in columns:
        entry = _culture_entry(model, culture)
        facts.append({"model": model.get("model"), **({k: entry.get(k) for k in keep} if entry else {})})
    return {"models": facts}


def hofstede_facts(results: dict[str, Any], culture: str) -> dict[str, Any]:
    """The indices of both columns beside the reference, and each one's RMS distance to it."""
    columns = sorted(results.get("models", []), key=lambda m: m.get("column", 0))
    keep = ("countries", "indices", "reference", "rms", "compared", "unparsable")
    facts = []
    for model in columns:
        entry = _culture_entry(model, culture)
        facts.append({"model": model.get("model"), **({k: entry.get(k) for k in keep} if entry else {})})
    return {"models": facts}


# --- the report -----------------------------------------------------------------------------------


def _interval(value: float | None, ci: Sequence[float] | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{value:{sign}.{digits}f}"
    if ci:
        text += f" [{ci[0]:{sign}.{digits - 1}f}, {ci[1]:{sign}.{digits - 1}f}]"
    return text


def _percent(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "-"
    lo, hi = metric["ci"]
    return f"{100 * metric['value']:.0f} % [{100 * lo:.0f}, {100 * hi:.0f}]"


def _metric(metric: dict[str, Any] | None) -> str:
    return "-" if not metric else _interval(metric["value"], metric["ci"])


def paired_verdict(difference: dict[str, Any] | None) -> str:
    if not difference or not difference.get("ci"):
        return "no paired difference could be computed"
    lo, hi = difference["ci"]
    if lo > 0:
        return "higher with the fine-tuned model (the paired 95 % interval excludes 0)"
    if hi < 0:
        return "lower with the fine-tuned model (the paired 95 % interval excludes 0)"
    return "no clear difference (the paired 95 % interval includes 0)"


def separate_verdict(base: dict[str, Any] | None, tuned: dict[str, Any] | None, lower_is_better: bool) -> str:
    """Two models' intervals, each over questions (not a paired test): apart, or overlapping."""
    if not base or not tuned:
        return "-"
    if tuned["ci"][0] > base["ci"][1]:
        better = not lower_is_better
    elif tuned["ci"][1] < base["ci"][0]:
        better = lower_is_better
    else:
        return "overlap"
    return "fine-tuned better" if better else "fine-tuned worse"


def render_report(settings: PipelineSettings, record: dict[str, Any], results: dict[str, Any]) -> str:
    lines = [
        f"# Pipeline: {settings.culture}",
        "",
        f"Status: **{record.get('status')}**. Base model `{settings.base_model}` ({settings.backend} backend), "
        f"generator `{settings.generator}`.",
        "",
        "| Stage | Status | Attempts | Seconds |",
        "|---|---|---:|---:|",
    ]
    for name in stage_names(settings):
        entry = record.get("stages", {}).get(name, {})
        attempts = entry.get("attempts", [])
        seconds = sum(a.get("seconds") or 0 for a in attempts)
        lines.append(f"| {name} | {entry.get('status', 'not run')} | {len(attempts)} | {seconds:g} |")
    lines += [
        "",
        *generated_section(results),
        *trained_section(results),
        *before_after_sections(settings, results),
    ]
    return "\n".join(lines).rstrip() + "\n"


def generated_section(results: dict[str, Any]) -> list[str]:
    lines = ["## Generated", ""]
    augment, dataset = results.get("augment"), results.get("dataset")
    if augment is None:
        lines.append("augment has not run yet.")
    else:
        judges = (
            ", ".join(augment.get("judge") or [])
            if isinstance(augment.get("judge"), list)
            else augment.get("judge")
        )
        lines.append(
            f"augment ({augment['status']}): generator `{augment['generator']}`, judge `{judges}`; "
            f"{augment['seeds_done']} of {augment['seeds']} seeds done ({augment['seeds_failed']} failed), "
            f"{augment['seeds_with_samples']} with samples, **{augment['samples']} samples kept**; "
            f"{augment['llm_calls']} LLM calls ({augment['llm_calls_replayed']} replayed from the ledger)."
        )
    if dataset is not None:
        held = dataset["validation_questions"]
        lines += [
            "",
            f"build-dataset: {dataset['train_examples']} training and {dataset['validation_examples']} validation "
            f"examples; {len(held)} whole questions held out ({', '.join('Q' + q for q in held) or 'none'}).",
        ]
    return [*lines, ""]


def trained_section(results: dict[str, Any]) -> list[str]:
    lines = ["## Trained", ""]
    train = results.get("train")
    if train is None:
        return [*lines, "train has not finished yet.", ""]
    if train["backend"] == "openai":
        metrics = train.get("last_metrics") or {}
        loss = metrics.get("train_loss")
        lines.append(
            f"OpenAI job `{train['id']}` ({train['status']}) on `{train['model']}`: fine-tuned model "
            f"`{train['fine_tuned_model']}`; {train.get('trained_tokens')} trained tokens"
            + (
                f"; last reported train loss {loss:.4f} at step {metrics.get('step')}"
                if loss is not None
                else ""
            )
            + "."
        )
    else:
        eval_loss = (
            f", validation loss {train['eval_loss']:.4f}" if train.get("eval_loss") is not None else ""
        )
        first, final = train.get("first_loss"), train.get("final_loss")
        losses = (
            f"loss {first:.4f} -> {final:.4f}"
            if first is not None and final is not None
            else "no loss logged"
        )
        lines.append(
            f"{train['method']} on `{train['base_model']}`: {train['steps']} steps ({train['epochs']:.2f} epochs) over "
            f"{train['train_examples']} examples, {losses}{eval_loss}; {train['train_runtime_s']:g} s; "
            f"saved `{train.get('adapter_dir') or train.get('model_dir')}`."
        )
    return [*lines, ""]


def before_after_sections(settings: PipelineSettings, results: dict[str, Any]) -> list[str]:
    lines = ["## Before / after", ""]
    renderers = {"wvs": wvs_section, "hofstede": hofstede_section, "downstream": downstream_section}
    for suite in settings.suites:
        found = results.get(eval_stage(suite))
        if found is None:
            lines += [f"### {suite}", "", f"evaluate --suite {suite} has not completed yet.", ""]
        else:
            lines += renderers[suite](settings.culture, found)
    return lines


def downstream_section(culture: str, facts: dict[str, Any]) -> list[str]:
    base, tuned = facts["models"]
    row = facts["culture"]
    lines = [
        "### Downstream culture tasks (macro-F1, 95 % bootstrap intervals)",
        "",
        f"Base `{base}`; fine-tuned `{tuned}`.",
        "",
        "| Culture / task | n | base | fine-tuned | fine-tuned - base (paired) |",
        "|---|---:|---|---|---|",
        f"| **{culture}** (mean of {row.get('tasks')} tasks) | | {_score(row['base'])} | {_score(row['tuned'])} "
        f"| {_difference(row['difference'])} |",
    ]
    for task in facts["tasks"]:
        lines.append(
            f"| {task['task']} | {task['n']} | {_score(task['base'])} | {_score(task['tuned'])} "
            f"| {_difference(task['difference'])} |"
        )
    return [*lines, "", f"Macro-F1 of {culture}: {paired_verdict(row['difference'])}.", ""]


def _score(score: dict[str, Any] | None) -> str:
    return "-" if score is None else _interval(score["macro_f1"], score["ci"])


def _difference(difference: dict[str, Any] | None) -> str:
    return "-" if difference is None else _interval(difference["diff"], difference["ci"], signed=True)


def wvs_section(culture: str, facts: dict[str, Any]) -> list[str]:
    models = facts["models"]
    if len(models) < 2:
        return ["### WVS alignment", "", "results.json has fewer than two models.", ""]
    base, tuned = models[0], models[1]
    rows = [
        ("Mode match (higher is better)", "mode_match", _percent, False),
        ("Scale error (lower is better)", "scale_error", _metric, True),
        ("JS divergence (lower is better)", "js_divergence", _metric, True),
    ]
    lines = [
        f"### WVS alignment on the held-out questions ({culture})",
        "",
        f"Base `{base['model']}`, {base.get('scored')} questions scored; fine-tuned `{tuned['model']}`, "
        f"{tuned.get('scored')} scored. Means over questions with 95 % bootstrap intervals; the two intervals "
        "are each model's own, not a paired difference.",
        "",
        "| Metric | base | fine-tuned | intervals |",
        "|---|---|---|---|",
    ]
    for title, key, shown, lower_is_better in rows:
        lines.append(
            f"| {title} | {shown(base.get(key))} | {shown(tuned.get(key))} "
            f"| {separate_verdict(base.get(key), tuned.get(key), lower_is_better)} |"
        )
    return [*lines, ""]


def hofstede_section(culture: str, facts: dict[str, Any]) -> list[str]:
    models = facts["models"]
    if len(models) < 2:
        return ["### Hofstede", "", "results.json has fewer than two models.", ""]
    base, tuned = models[0], models[1]
    reference = base.get("reference") or {}
    dimensions = list(
        dict.fromkeys([*reference, *(base.get("indices") or {}), *(tuned.get("indices") or {})])
    )
    lines = [
        f"### Hofstede VSM 2013 indices ({culture}; reference: {', '.join(base.get('countries') or [])})",
        "",
        "| Dimension | reference | base | fine-tuned |",
        "|---|---:|---:|---:|",
    ]
    for dim in dimensions:
        cells = [
            reference.get(dim),
            (base.get("indices") or {}).get(dim),
            (tuned.get("indices") or {}).get(dim),
        ]
        lines.append(f"| {dim.upper()} | " + " | ".join("-" if c is None else f"{c:g}" for c in cells) + " |")
    lines.append(
        f"| RMS to the reference (lower is closer) | | {_number(base.get('rms'))} | {_number(tuned.get('rms'))} |"
    )
    lines += [
        "",
        f"Unparsable answers: base {base.get('unparsable')}, fine-tuned {tuned.get('unparsable')}. One index per "
        "model from its item means: no interval, so a small change in RMS may be noise.",
        "",
    ]
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
