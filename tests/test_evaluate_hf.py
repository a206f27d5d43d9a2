"""`evaluate` on `hf:` models: the embedded SmolLM2 in transformers beside the same model with a LoRA
adapter from a real `train` run, and the train output directory given as the model itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def trained(trained_run) -> Path:
    """A 2-step LoRA fine-tune of the embedded SmolLM2 (tests/conftest.py)."""
    return trained_run


def predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_a_fine_tuned_adapter_is_evaluated_beside_its_base_model(tmp_path, trained):
    out = tmp_path / "eval"
    flags = ["--model", "hf:local", "--model", "hf:local", "--adapter", str(trained / "adapter")]
    code = main(
        [
            "evaluate",
            "--quiet",
            *flags,
            "--culture",
            "Arabic",
            "--limit-per-task",
            "6",
            "--max-tokens",
            "6",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rows = predictions(out)
    names = {r["model"] for r in rows}
    assert names == {"hf:local", f"hf:local+{trained / 'adapter'}"}
    base = [(r["item_id"], r["raw"]) for r in rows if r["column"] == 0]
    tuned = [(r["item_id"], r["raw"]) for r in rows if r["column"] == 1]
    assert [i for i, _ in base] == [i for i, _ in tuned] and len(base) == 6
    results = json.loads((out / "results.json").read_text())
    assert len(results["differences"]) >= 1  # the adapter's difference from the base, with its interval
    report = (out / "report.md").read_text()
    assert "hf:local" in report


def test_a_train_output_directory_is_a_model(tmp_path, trained):
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--quiet",
            "--model",
            str(trained),
            "--culture",
            "Arabic",
            "--limit-per-task",
            "3",
            "--max-tokens",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert len(predictions(out)) == 3


def test_an_adapter_needs_an_hf_model(tmp_path, trained, capsys):
    code = main(
        ["evaluate", "--model", "local", "--adapter", str(trained / "adapter"), "--out", str(tmp_path / "x")]
    )
    assert code == 2
    assert "only hf: models take an adapter" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
