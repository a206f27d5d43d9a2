"""The pipeline's report (evals/pipeline_report.py), read from stage outputs written by hand into tmp_path.

Each spec lays out a pipeline directory as the stages leave it (augment's manifest, the dataset's files
and card, train's summary.json, an evaluate run's manifest and results.json), then writes the report
and reads OUT/report.md back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from commands.pipeline import PipelineSettings
from evals.pipeline_report import collect_results, paired_verdict, write_report

BASE, TUNED = "hf:local", "hf:local+adapter"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_augment(out: Path) -> None:
    write_json(
        out / "augment" / "manifest.json",
        {
            "status": "completed",
            "generator": "local",
            "judge": ["embed:local", "local"],
            "counts": {
                "seeds": 3,
                "seeds_done": 3,
                "seeds_failed": 0,
                "seeds_with_samples": 2,
                "samples": 17,
                "llm_calls": 40,
                "llm_calls_replayed": 5,
            },
        },
    )


def write_dataset(out: Path) -> None:
    dataset = out / "dataset"
    dataset.mkdir(parents=True)
    (dataset / "train.jsonl").write_text('{"messages": []}\n' * 4 + "\n", encoding="utf-8")
    (dataset / "validation.jsonl").write_text('{"messages": []}\n', encoding="utf-8")
    (dataset / "labels.jsonl").write_text("", encoding="utf-8")
    (dataset / "README.md").write_text(
        "# Dataset\n\nValidation holds out whole questions (0.2 of them, chosen by a hash): Q34, Q35.\n",
        encoding="utf-8",
    )


def write_local_training(out: Path) -> None:
    write_json(
        out / "train" / "summary.json",
        {
            "base_model": "local",
            "method": "lora",
            "steps": 10,
            "epochs": 2.5,
            "first_loss": 2.25,
            "final_loss": 1.5,
            "eval_loss": None,
            "train_examples": 4,
            "validation_examples": 1,
            "train_runtime_s": 12.5,
            "adapter_dir": str(out / "train" / "adapter"),
        },
    )


def write_downstream_eval(out: Path, status: str = "completed") -> None:
    run = out / "eval-downstream"
    write_json(run / "manifest.json", {"status": status})
    task = "Arabic/offensive_detect"
    write_json(
        run / "results.json",
        {
            "models": [BASE, TUNED],
            "level": 0.95,
            "cultures": [
                {"model": BASE, "culture": "Arabic", "macro_f1": 0.5, "ci": [0.0, 1.0], "tasks": 1},
                {"model": TUNED, "culture": "Arabic", "macro_f1": 0.75, "ci": [0.6, 0.9], "tasks": 1},
            ],
            "tasks": [
                {"model": BASE, "culture": "Arabic", "task": task, "n": 4, "macro_f1": 0.5, "ci": [0.0, 1.0]},
                {
                    "model": TUNED,
                    "culture": "Arabic",
                    "task": task,
                    "n": 4,
                    "macro_f1": 0.75,
                    "ci": [0.6, 0.9],
                },
            ],
            "differences": [
                {
                    "model": TUNED,
                    "baseline": BASE,
                    "culture": "Arabic",
                    "task": None,
                    "diff": 0.25,
                    "ci": [0.1, 0.4],
                },
                {
                    "model": TUNED,
                    "baseline": BASE,
                    "culture": "Arabic",
                    "task": task,
                    "diff": 0.25,
                    "ci": [0.1, 0.4],
                },
            ],
        },
    )


def stage_record(status: str, stages: dict[str, str]) -> dict[str, Any]:
    """pipeline.json as the command keeps it: one attempt of 1.5 s per stage that ran."""
    return {
        "status": status,
        "stages": {name: {"status": state, "attempts": [{"seconds": 1.5}]} for name, state in stages.items()},
    }


def report_of(settings: PipelineSettings, out: Path, record: dict[str, Any]) -> str:
    return write_report(settings, out, record, collect_results(settings, out)).read_text(encoding="utf-8")


def test_a_pipeline_stopped_after_the_dataset_reports_what_it_generated_and_the_stages_not_run(tmp_path):
    settings = PipelineSettings(culture="Arabic", suites=["downstream"])
    write_augment(tmp_path)
    write_dataset(tmp_path)

    report = report_of(
        settings, tmp_path, stage_record("stopped", {"augment": "completed", "dataset": "completed"})
    )

    assert "Status: **stopped**. Base model `local` (local backend), generator `local`." in report
    assert "| dataset | completed | 1 | 1.5 |" in report
    assert "| train | not run | 0 | 0 |" in report
    assert "| eval-downstream | not run | 0 | 0 |" in report
    assert (
        "augment (completed): generator `local`, judge `embed:local, local`; 3 of 3 seeds done (0 failed), "
        "2 with samples, **17 samples kept**; 40 LLM calls (5 replayed from the ledger)."
    ) in report
    # Blank lines in a JSONL file are not examples.
    assert (
        "build-dataset: 4 training and 1 validation examples; 2 whole questions held out (Q34, Q35)."
        in report
    )
    assert "train has not finished yet." in report
    assert "evaluate --suite downstream has not completed yet." in report
    assert not (tmp_path / "report.md.tmp").exists()


def test_downstream_scores_and_their_paired_difference_are_written_with_their_intervals(tmp_path):
    settings = PipelineSettings(culture="Arabic", suites=["downstream"])
    write_augment(tmp_path)
    write_dataset(tmp_path)
    write_local_training(tmp_path)
    write_downstream_eval(tmp_path)
    stages = dict.fromkeys(("augment", "dataset", "train", "eval-downstream"), "completed")

    report = report_of(settings, tmp_path, stage_record("completed", stages))

    assert (
        "lora on `local`: 10 steps (2.50 epochs) over 4 examples, loss 2.2500 -> 1.5000; 12.5 s; "
        f"saved `{tmp_path / 'train' / 'adapter'}`."
    ) in report
    assert f"Base `{BASE}`; fine-tuned `{TUNED}`." in report
    assert (
        "| **Arabic** (mean of 1 tasks) | | 0.500 [0.00, 1.00] | 0.750 [0.60, 0.90] | +0.250 [+0.10, +0.40] |"
        in report
    )
    assert (
        "| Arabic/offensive_detect | 4 | 0.500 [0.00, 1.00] | 0.750 [0.60, 0.90] | +0.250 [+0.10, +0.40] |"
        in report
    )
    assert (
        "Macro-F1 of Arabic: higher with the fine-tuned model (the paired 95 % interval excludes 0)."
        in report
    )


def test_an_evaluation_whose_manifest_is_not_completed_is_reported_as_not_done(tmp_path):
    settings = PipelineSettings(culture="Arabic", suites=["downstream"])
    write_downstream_eval(tmp_path, status="interrupted")

    results = collect_results(settings, tmp_path)

    assert results == {"augment": None, "dataset": None, "train": None, "eval-downstream": None}
    report = report_of(settings, tmp_path, stage_record("interrupted", {"eval-downstream": "interrupted"}))
    assert "augment has not run yet." in report
    assert "evaluate --suite downstream has not completed yet." in report


@pytest.mark.parametrize(
    ("ci", "verdict"),
    [
        ([0.01, 0.2], "higher with the fine-tuned model"),
        ([-0.3, -0.02], "lower with the fine-tuned model"),
        ([-0.1, 0.1], "no clear difference"),
    ],
)
def test_the_report_says_a_difference_only_when_its_paired_interval_excludes_zero(ci, verdict):
    assert paired_verdict({"diff": sum(ci) / 2, "ci": ci}).startswith(verdict)
