"""`python cli.py pipeline`: augment -> build-dataset -> train -> evaluate, resumable, with a report.

The loopback tests drive every stage against real HTTP servers on 127.0.0.1: the OpenAI-compatible
mock (bench/mock_openai_server.py) generates, embeds and answers the evaluations, and the fine-tuning
imitation (tests/fake_openai_finetune_server.py) runs the OpenAI job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from cli import main
from commands.errors import EXIT_INTERRUPTED, UserError
from commands.pipeline import (
    RECORD,
    REPORT,
    PipelineRecord,
    PipelineSettings,
    model_columns,
    stage_state,
)
from tests.conftest import FAKE_KEY
from tests.fake_openai_finetune_server import FakeServer


@pytest.fixture
def finetune():
    with FakeServer(api_key=FAKE_KEY) as server:
        yield server


def loopback_args(mock, finetune, out: Path, *flags: str) -> list[str]:
    """A small pipeline on the loopback servers: 2 seeds, 4 items per downstream task, 2 survey draws."""
    return [
        "pipeline",
        "--quiet",
        "--culture",
        "Arabic",
        "--generator",
        "openai:mock-model",
        "--judge",
        "embed:openai:mock-embed",
        "--base-url",
        mock.base_url,
        "--backend",
        "openai",
        "--base-model",
        "mock-model",
        "--openai-base-url",
        finetune.base_url,
        "--poll-interval",
        "0.01",
        "--limit",
        "2",
        "--limit-per-task",
        "4",
        "--samples",
        "2",
        "--out",
        str(out),
        *flags,
    ]


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def difference_of(results: dict, culture: str) -> dict:
    return next(d for d in results["differences"] if d["culture"] == culture and d["task"] is None)


def test_the_loopback_pipeline_trains_and_reports_base_and_fine_tuned_side_by_side(
    mock_openai, finetune, tmp_path, capsys
):
    out = tmp_path / "p"
    assert main(loopback_args(mock_openai, finetune, out)) == 0

    stdout = capsys.readouterr().out
    stages = ["augment", "dataset", "train", "eval-wvs", "eval-hofstede", "eval-downstream"]
    for number, name in enumerate(stages, start=1):
        assert re.search(rf"^pipeline \[{number}/6\] {name}: started: python cli.py ", stdout, re.M)
        assert re.search(rf"^pipeline \[{number}/6\] {name}: completed in ", stdout, re.M)
    record = read(out / RECORD)
    assert record["status"] == "completed"
    assert {name: stage["status"] for name, stage in record["stages"].items()} == dict.fromkeys(
        stages, "completed"
    )

    # The columns: the base model and the job's fine-tuned model, in one run per suite.
    fine_tuned = read(out / "train" / "openai_job.json")["fine_tuned_model"]
    assert fine_tuned.startswith("ft:mock-model:")
    for suite in ("wvs", "hofstede", "downstream"):
        manifest = read(out / f"eval-{suite}" / "manifest.json")
        assert manifest["status"] == "completed"
        assert [m["spec"] for m in manifest["config"]["models"]] == [
            "openai:mock-model",
            f"openai:{fine_tuned}",
        ]
    assert read(out / "eval-wvs" / "manifest.json")["config"]["validation_of"] == str(out / "dataset")

    # The report's numbers are each evaluate run's own.
    report = (out / REPORT).read_text(encoding="utf-8")
    samples = read(out / "augment" / "manifest.json")["counts"]["samples"]
    assert f"**{samples} samples kept**" in report
    assert f"fine-tuned model `{fine_tuned}`" in report

    downstream = read(out / "eval-downstream" / "results.json")
    paired = difference_of(downstream, "Arabic")
    assert f"{paired['diff']:+.3f} [{paired['ci'][0]:+.2f}, {paired['ci'][1]:+.2f}]" in report
    assert record["results"]["eval-downstream"]["culture"]["difference"] == {
        "diff": paired["diff"],
        "ci": paired["ci"],
    }
    macro = {r["model"]: r["macro_f1"] for r in downstream["cultures"] if r["culture"] == "Arabic"}
    assert f"| {macro['openai:mock-model']:.3f} [" in report
    assert f"| {macro[f'openai:{fine_tuned}']:.3f} [" in report

    wvs = read(out / "eval-wvs" / "results.json")
    for model in wvs["models"]:
        [arabic] = model["cultures"]
        for key in ("scale_error", "js_divergence"):
            assert (
                f"{arabic[key]['value']:.3f} [{arabic[key]['ci'][0]:.2f}, {arabic[key]['ci'][1]:.2f}]"
                in report
            )
        assert f"{100 * arabic['mode_match']['value']:.0f} % [" in report

    hofstede = read(out / "eval-hofstede" / "results.json")
    rms = [model["cultures"][0]["rms"] for model in hofstede["models"]]
    assert f"| RMS to the reference (lower is closer) | | {rms[0]:.2f} | {rms[1]:.2f} |" in report


def test_a_pipeline_stopped_after_the_dataset_resumes_without_redoing_finished_stages(
    mock_openai, finetune, tmp_path, capsys
):
    out = tmp_path / "p"
    args = loopback_args(mock_openai, finetune, out, "--suite", "downstream")
    assert main([*args, "--stop-after", "dataset"]) == 0
    assert "stopped after dataset; continue with: python cli.py pipeline --resume" in capsys.readouterr().out
    assert read(out / RECORD)["status"] == "stopped"
    assert not (out / "train").exists()

    augment_manifest = (out / "augment" / "manifest.json").read_bytes()
    dataset_written = (out / "dataset" / "train.jsonl").stat().st_mtime_ns
    embeddings = len(mock_openai.requests("/embeddings"))  # only augment's judge embeds
    jobs_before = len(finetune.state.create_bodies)

    assert main(["pipeline", "--resume", str(out), "--quiet"]) == 0

    stdout = capsys.readouterr().out
    assert "pipeline [1/4] augment: already completed" in stdout
    assert "pipeline [2/4] dataset: already completed" in stdout
    assert (out / "augment" / "manifest.json").read_bytes() == augment_manifest
    assert (out / "dataset" / "train.jsonl").stat().st_mtime_ns == dataset_written
    assert len(mock_openai.requests("/embeddings")) == embeddings
    assert len(finetune.state.create_bodies) == jobs_before + 1
    record = read(out / RECORD)
    assert record["status"] == "completed"
    assert len(record["stages"]["augment"]["attempts"]) == 1
    assert read(out / "eval-downstream" / "manifest.json")["status"] == "completed"


def test_ctrl_c_inside_an_evaluation_leaves_it_to_be_resumed_with_its_own_resume(
    no_provider_env, finetune, tmp_path, capsys, request
):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    # Ctrl-C as a terminal sends it to a Python process with its default handler: some library an
    # earlier test loaded in this process may have replaced that handler (the CI run ignored the
    # signal once), so the test puts the default back for its own duration.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    out = tmp_path / "p"
    progress = out / "eval-hofstede" / "progress.jsonl"

    fired: list[float] = []

    def interrupt_once_answers_arrive() -> None:
        # The stages before it take a while on a fresh clone (first imports compile): wait long.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if progress.is_file() and progress.stat().st_size > 0:
                fired.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)

    # Slow answers and 2 calls in flight: the suite's 96 answers take ~10 s, so Ctrl-C lands mid-run.
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, latency_s=0.2)) as mock:
        args = loopback_args(mock, finetune, out, "--suite", "hofstede", "--concurrency", "2")
        watcher = threading.Thread(target=interrupt_once_answers_arrive, daemon=True)
        watcher.start()
        code = main(args)
        watcher.join()
        assert fired, "the watcher never saw the evaluation's first answer"
        assert code == EXIT_INTERRUPTED, f"Ctrl-C sent {fired[0]:.2f} (monotonic) was not taken: exit {code}"
        assert "interrupted; continue with: python cli.py pipeline --resume" in capsys.readouterr().err
        record = read(out / RECORD)
        assert record["status"] == "interrupted"
        assert record["stages"]["eval-hofstede"]["status"] == "interrupted"
        assert read(out / "eval-hofstede" / "manifest.json")["status"] == "interrupted"

        assert main(args) == 0  # the same command again continues it

    record = read(out / RECORD)
    assert record["status"] == "completed"
    attempts = record["stages"]["eval-hofstede"]["attempts"]
    assert [a["action"] for a in attempts] == ["started", "resumed"]
    assert f"evaluate --resume {out / 'eval-hofstede'}" in attempts[1]["command"]
    manifest = read(out / "eval-hofstede" / "manifest.json")
    assert manifest["status"] == "completed"
    assert len(manifest["segments"]) == 2
    for earlier in ("augment", "dataset", "train"):
        assert len(record["stages"][earlier]["attempts"]) == 1


def test_an_interrupted_openai_job_is_followed_again_not_started_twice(
    mock_openai, finetune, tmp_path, monkeypatch, capsys
):
    import trainers.openai_backend as backend

    follow = backend.follow
    calls = []

    def ctrl_c_on_the_first_follow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return follow(*args, **kwargs)

    monkeypatch.setattr(backend, "follow", ctrl_c_on_the_first_follow)
    out = tmp_path / "p"
    args = loopback_args(mock_openai, finetune, out, "--suite", "downstream", "--stop-after", "train")
    assert main(args) == EXIT_INTERRUPTED
    job = read(out / "train" / "openai_job.json")
    assert job["status"] not in ("succeeded", "failed", "cancelled")

    assert main(args) == 0
    attempts = read(out / RECORD)["stages"]["train"]["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "completed"]
    assert f"--job {job['id']}" in attempts[1]["command"]
    assert len(finetune.state.create_bodies) == 1
    assert read(out / "train" / "openai_job.json")["status"] == "succeeded"


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ([], "--culture is required"),
        (["--culture", "Atlantis"], "unknown culture 'Atlantis'"),
        (["--culture", "all"], "--culture all: the pipeline fine-tunes for one culture"),
        (["--culture", "Arabic", "--generator", "gpt-4"], "--generator: unknown model spec 'gpt-4'"),
        (["--culture", "Arabic", "--judge", "cosine"], "--judge: unknown judge spec 'cosine'"),
        (["--culture", "Arabic", "--n", "0"], "--n: input should be greater than 0 (got 0)"),
        (["--culture", "Arabic", "--rpm", "0"], "--rpm: input should be greater than or equal to 1"),
        (["--culture", "Arabic", "--samples", "0"], "--samples: input should be greater than 0"),
        (
            ["--culture", "Arabic", "--temperature", "3"],
            "--temperature: input should be less than or equal to 2",
        ),
        (["--culture", "Arabic", "--val-fraction", "1.5"], "--val-fraction: input should be less than 1"),
        (["--culture", "Arabic", "--val-fraction", "0"], "--val-fraction 0 holds out no question"),
        (["--culture", "Greek"], "--culture Greek: none of its 2 downstream tasks ships"),
        (["--culture", "Arabic", "--suite", "wvs", "--suite", "wvs"], "--suite: each suite once"),
        (
            ["--culture", "Arabic", "--suite", "downstream", "--stop-after", "eval-wvs"],
            "--stop-after eval-wvs",
        ),
        (
            ["--culture", "Arabic", "--backend", "openai", "--base-model", "gpt-x"],
            "OPENAI_API_KEY is not set",
        ),
        (["--culture", "Arabic", "--base-model", "no/such-model"], "--base-model 'no/such-model' is neither"),
        (
            ["--culture", "Arabic", "--train-config", "missing.yaml"],
            "config file 'missing.yaml' does not exist",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_stage_runs(flags, needle, tmp_path, capsys, no_provider_env):
    out = tmp_path / "p"
    assert main(["pipeline", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err
    assert not out.exists()


def test_openai_training_is_refused_a_step_limit_and_the_local_default_model(
    tmp_path, capsys, no_provider_env
):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    base = ["pipeline", "--out", str(tmp_path / "p"), "--culture", "Arabic", "--backend", "openai"]
    assert main([*base, "--base-model", "gpt-x", "--max-steps", "2"]) == 2
    assert "--max-steps 2: an OpenAI fine-tuning job takes no step limit" in capsys.readouterr().err
    assert main(base) == 2
    assert "--backend openai needs --base-model set to an OpenAI model" in capsys.readouterr().err


def test_an_unknown_stage_name_is_argparse_s_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["pipeline", "--culture", "Arabic", "--stop-after", "nowhere"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--stop-after: invalid choice: 'nowhere'" in err


def test_an_out_holding_other_files_and_a_resume_without_a_record_are_refused(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    assert main(["pipeline", "--culture", "Arabic", "--out", str(busy)]) == 2
    assert f"--out {busy} already holds files" in capsys.readouterr().err
    assert main(["pipeline", "--resume", str(busy)]) == 2
    assert f"--resume {busy}: no pipeline.json there" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_a_resume_that_would_change_the_results_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "p"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"config": {"culture": "Arabic", "limit": 2}}))
    assert main(["pipeline", "--resume", str(out), "--limit", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--limit 3 differs from the pipeline's 2; that would change the results" in err
    # The culture is matched without case, as every command matches it.
    assert main(["pipeline", "--resume", str(out), "--culture", "arabic", "--limit", "9"]) == 2
    assert "--limit 9 differs" in capsys.readouterr().err


def test_credentials_in_a_base_url_are_never_stored_and_must_be_given_again(tmp_path, capsys):
    settings = PipelineSettings(culture="Arabic", base_url="http://user:secret@127.0.0.1:9/v1")
    record = PipelineRecord(tmp_path, {"stages": {}}).configured(settings)
    record.save()
    text = (tmp_path / RECORD).read_text()
    assert "secret" not in text and record.data["config"]["base_url"] == "http://***@127.0.0.1:9/v1"
    assert main(["pipeline", "--resume", str(tmp_path)]) == 2
    assert "had credentials, which are never stored; give --base-url again" in capsys.readouterr().err


def test_the_fine_tuned_column_is_the_base_model_with_the_adapter_on_the_same_runtime(tmp_path):
    adapter = tmp_path / "train" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    local = PipelineSettings(culture="Arabic")
    assert model_columns(local, tmp_path, str(adapter)) == [
        "--model",
        "hf:local",
        "--model",
        "hf:local",
        "--adapter",
        str(adapter),
    ]
    api = PipelineSettings(culture="Arabic", backend="openai", base_model="openai:gpt-4o-mini")
    assert api.base_model == "gpt-4o-mini"  # the provider prefix is the pipeline's to add
    assert model_columns(api, tmp_path, "ft:gpt-4o-mini:org:x:1") == [
        "--model",
        "openai:gpt-4o-mini",
        "--model",
        "openai:ft:gpt-4o-mini:org:x:1",
    ]
    assert PipelineSettings(culture="Arabic", base_model="hf:some/model").base_model == "some/model"


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("completed", "done"),
        ("interrupted", "unfinished"),
        ("aborted", "unfinished"),
        ("failed", "unfinished"),
    ],
)
def test_a_stage_is_done_only_when_its_own_manifest_says_completed(tmp_path, status, state):
    run_dir = tmp_path / "augment"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps({"status": status}))
    assert stage_state("augment", PipelineSettings(culture="Arabic"), tmp_path) == state


def test_a_run_directory_killed_before_its_manifest_is_redone_and_one_with_strange_files_is_refused(
    tmp_path,
):
    settings = PipelineSettings(culture="Arabic")
    locked_only = tmp_path / "eval-wvs"
    locked_only.mkdir()
    (locked_only / ".lock").touch()
    assert stage_state("eval-wvs", settings, tmp_path) == "new"
    assert not locked_only.exists()
    strange = tmp_path / "augment"
    strange.mkdir()
    (strange / "samples.jsonl").write_text("")
    with pytest.raises(UserError, match="holds samples.jsonl but no manifest.json"):
        stage_state("augment", settings, tmp_path)


@pytest.mark.slow
def test_the_embedded_models_go_through_every_stage_with_two_columns(tmp_path):
    """CI-sized: 1 seed, 2 training steps, the held-out WVS questions and 2 items per downstream task
    (the Hofstede suite, 24 items per column, is left to the loopback tests to keep this near 2 minutes)."""
    out = tmp_path / "p"
    sizes = ["--limit", "1", "--max-steps", "2", "--limit-per-task", "2", "--samples", "1"]
    models = ["--generator", "local", "--base-model", "local"]
    suites = ["--suite", "wvs", "--suite", "downstream"]
    argv = ["pipeline", "--quiet", "--culture", "Arabic", *models, *sizes, *suites, "--out", str(out)]
    assert main(argv) == 0

    assert read(out / RECORD)["status"] == "completed"
    assert read(out / "augment" / "manifest.json")["counts"]["seeds_done"] == 1
    summary = read(out / "train" / "summary.json")
    assert summary["steps"] == 2
    for suite in ("wvs", "downstream"):
        manifest = read(out / f"eval-{suite}" / "manifest.json")
        assert manifest["config"]["models"] == [
            {"spec": "hf:local", "adapter": None},
            {"spec": "hf:local", "adapter": summary["adapter_dir"]},
        ]
    report = (out / REPORT).read_text(encoding="utf-8")
    assert f"{summary['steps']} steps" in report
    assert "| Mode match (higher is better) |" in report
    assert "fine-tuned - base (paired)" in report
