"""`python cli.py evaluate` end to end against the loopback OpenAI-compatible server and on the
embedded model: the 9 shipped tasks, models side by side, untidy data, faults, a kill and a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.mock_openai_server import FAULT_KINDS, MockOpenAIServer, ServerConfig
from cli import main
from tests.conftest import FAKE_KEY

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
SHIPPED_TASKS = 9


def flags(server, *more: str) -> list[str]:
    return ["evaluate", "--quiet", "--base-url", server.base_url, *more]


def two_models(server, *more: str) -> list[str]:
    return flags(server, "--model", "openai:mock-a", "--model", "openai:mock-b", *more)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_models_answer_the_same_items_of_the_nine_shipped_tasks(tmp_path, mock_openai):
    out = tmp_path / "eval"
    assert main(two_models(mock_openai, "--limit-per-task", "10", "--out", str(out))) == 0
    predictions = lines(out / "predictions.jsonl")
    assert len(predictions) == SHIPPED_TASKS * 10 * 2
    items = {
        m: {(p["task"], p["item_id"]) for p in predictions if p["model"] == m}
        for m in ("openai:mock-a", "openai:mock-b")
    }
    assert items["openai:mock-a"] == items["openai:mock-b"] and len(items["openai:mock-a"]) == 90
    assert any(p["label"] is None for p in predictions)  # the mock refuses now and then: invalid
    results = json.loads((out / "results.json").read_text())
    assert (out / "report.md").read_text().count("|") > 20
    assert list((out).glob("*.png")), "no plot was written"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "evaluate" and manifest["status"] == "completed"
    assert (
        manifest["models"] == ["openai:mock-a", "openai:mock-b"] and len(manifest["tasks"]) == SHIPPED_TASKS
    )
    assert results  # scored
    for path in out.iterdir():
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path.name


def test_the_items_are_a_stratified_sample_fixed_by_the_seed(tmp_path, mock_openai):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert (
            main(
                flags(
                    mock_openai,
                    "--model",
                    "openai:mock-a",
                    "--culture",
                    "German",
                    "--limit-per-task",
                    "12",
                    "--out",
                    str(out),
                )
            )
            == 0
        )
    ids = [[p["item_id"] for p in lines(out / "predictions.jsonl")] for out in (first, second)]
    assert ids[0] == ids[1] and len(ids[0]) == 12
    golds = {p["gold"] for p in lines(first / "predictions.jsonl")}
    assert golds == {"OFF", "NOT"}


def test_unknown_culture_and_task_are_one_line_listing_the_known(tmp_path, mock_openai, capsys):
    assert main(flags(mock_openai, "--culture", "Atlantean", "--out", str(tmp_path / "a"))) == 2
    err = capsys.readouterr().err
    assert "Atlantean" in err and "Arabic" in err and len(err.strip().splitlines()) == 1
    assert main(flags(mock_openai, "--task", "no_such_task", "--out", str(tmp_path / "b"))) == 2
    assert "no_such_task" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_wrong_key_is_one_line_and_exit_2_before_the_run_directory(tmp_path, mock_openai, capsys):
    mock_openai.config.api_key = "sk-the-server-wants-another-key"
    out = tmp_path / "eval"
    assert (
        main(flags(mock_openai, "--model", "openai:mock-a", "--limit-per-task", "2", "--out", str(out))) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "HTTP 401" in err
    assert not out.exists()


def test_untidy_data_is_counted_and_missing_files_listed(tmp_path, mock_openai, capsys):
    data = tmp_path / "data" / "Germany" / "GermEval"
    data.mkdir(parents=True)
    rows = [
        json.dumps({"tweet": "Das ist ein ganz normaler Satz.", "label": "NOT"}),
        "{broken json",
        json.dumps({"tweet": "", "label": "OFF"}),
        json.dumps({"tweet": 12345, "label": "OFF"}),
        json.dumps({"tweet": "ohne Label", "label": ""}),
        json.dumps({"tweet": "x " * 20000, "label": "OFF"}),
    ]
    (data / "germeval2018.jsonl").write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval"
    code = main(
        flags(
            mock_openai,
            "--model",
            "openai:mock-a",
            "--culture",
            "German",
            "--data-dir",
            str(tmp_path / "data"),
            "--out",
            str(out),
        )
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "germeval2018.jsonl:2" in err  # the broken line, named; the rest still ran
    assert "4 task files are in none of" in err  # German's other four sets are not in the folders
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["data"]["German/offensive_detect_eval"]
    assert counts["items"] == 3 and counts["unlabelled"] == 1 and counts["empty_texts"] == 1
    assert counts["truncated"] == 1
    assert len(manifest["missing_tasks"]) == 4


def test_twenty_percent_faults_of_every_kind_still_finish(tmp_path, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    config = ServerConfig(
        api_key=FAKE_KEY, fault_rate=0.2, fault_kinds=FAULT_KINDS, hang_s=2.0, retry_after_s=0.05, seed=7
    )
    with MockOpenAIServer(config) as server:
        out = tmp_path / "eval"
        more = (
            "--model",
            "openai:mock-a",
            "--limit-per-task",
            "4",
            "--timeout",
            "1",
            "--max-attempts",
            "10",
            "--out",
            str(out),
        )
        assert main(flags(server, *more)) == 0
        kinds = {r.fault for r in server.log if r.fault}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["counts"]["answered"] == SHIPPED_TASKS * 4
    assert len(kinds) >= 3, f"too few fault kinds were injected to prove anything: {kinds}"


@pytest.mark.slow
def test_killed_then_resumed_scores_what_an_uninterrupted_run_scores(tmp_path, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, latency_s=0.05)) as server:
        more = ("--limit-per-task", "6", "--concurrency", "2")
        whole = tmp_path / "whole"
        assert main(two_models(server, *more, "--out", str(whole))) == 0
        paid = len(server.requests("/chat/completions"))
        server.log.clear()

        out = tmp_path / "killed"
        command = [sys.executable, "cli.py", *two_models(server, *more, "--out", str(out))]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while len(server.requests("/chat/completions")) < 30:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "evaluate made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)

        assert main(["evaluate", "--quiet", "--resume", str(out)]) == 0
        after = len(server.requests("/chat/completions"))
    assert (out / "predictions.jsonl").read_text() == (whole / "predictions.jsonl").read_text()
    assert json.loads((out / "results.json").read_text()) == json.loads((whole / "results.json").read_text())
    assert after <= paid + 2


@pytest.mark.slow
def test_the_nine_tasks_on_the_embedded_model(tmp_path):
    # README measures --limit-per-task 20 (180 answers, ~2 min); 3 per task runs the same path in CI.
    from evals.parsing import parse_label
    from evals.tasks import load_registry

    out = tmp_path / "eval"
    assert main(["evaluate", "--quiet", "--limit-per-task", "3", "--out", str(out)]) == 0
    predictions = lines(out / "predictions.jsonl")
    assert len(predictions) == SHIPPED_TASKS * 3 and {p["model"] for p in predictions} == {"local"}
    tasks = {t.key: t for t in load_registry()}
    for p in predictions:  # each recorded label is the parser's reading of the model's own answer
        task = tasks[p["task"]]
        assert p["label"] == parse_label(p["raw"], task.labels, task.meanings), p
    results = json.loads((out / "results.json").read_text())
    assert len({row["culture"] for row in results["cultures"]}) == SHIPPED_TASKS
    assert (out / "report.md").exists() and (out / "culture_radar.png").exists()
