"""The OpenAI backend against a loopback imitation of the files and fine-tuning-jobs endpoints."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cli import main
from tests.fake_openai_finetune_server import FakeServer
from tests.train_helpers import conversations, write_dataset_dir, write_jsonl
from trainers.config import TrainConfig, UserError
from trainers.openai_backend import make_client, run_openai

KEY = "sk-test-SECRET-0123456789"

pytestmark = pytest.mark.integration


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with FakeServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def train_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", conversations(12))


def config(server: FakeServer, tmp_path: Path, **overrides) -> TrainConfig:
    values = {
        "backend": "openai",
        "base_model": "gpt-4o-mini-2024-07-18",
        "openai_base_url": server.base_url,
        "output_dir": tmp_path / "run",
        "poll_interval": 0.01,
        "max_retries": 3,
    }
    values.update(overrides)
    return TrainConfig(**values)


def run(cfg: TrainConfig, sleeps: list[float] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    sleeps = [] if sleeps is None else sleeps
    code = run_openai(cfg, out=out, sleep=sleeps.append, backoff_initial_s=0.01)
    return code, out.getvalue()


def cli(argv: list[str]) -> int:
    return main(["train", *argv])


def test_uploads_creates_follows_and_records_the_job(server, tmp_path, train_file):
    code, log = run(config(server, tmp_path, data=train_file, suffix="culture", num_epochs=2))

    assert code == 0
    state = server.state
    assert [f["filename"] for f in state.files.values()] == ["train.jsonl"]
    assert next(iter(state.uploads.values())) == train_file.read_bytes()
    (body,) = state.create_bodies
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["suffix"] == "culture"
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    record = json.loads((tmp_path / "run" / "openai_job.json").read_text())
    assert record["status"] == "succeeded"
    assert record["fine_tuned_model"].startswith("ft:gpt-4o-mini-2024-07-18:org-test:culture:")
    assert record["id"].startswith("ftjob-")
    assert record["last_metrics"]["step"] == 3
    # The progress display showed the status changes and every training step.
    for text in ("validating_files", "queued", "running", "succeeded", "step 1/3", "step 3/3"):
        assert text in log


def test_build_dataset_directory_uploads_train_and_validation(server, tmp_path):
    data = write_dataset_dir(tmp_path / "dataset", n_train=10, n_val=3)
    code, _ = run(config(server, tmp_path, data=data))

    assert code == 0
    names = sorted(f["filename"] for f in server.state.files.values())
    assert names == ["train.jsonl", "validation.jsonl"]
    (body,) = server.state.create_bodies
    assert body["validation_file"] in server.state.files


def test_job_flag_resumes_following_without_uploading(server, tmp_path, train_file):
    first, _ = run(config(server, tmp_path, data=train_file))
    job_id = json.loads((tmp_path / "run" / "openai_job.json").read_text())["id"]
    uploads = len(server.state.files)

    code, log = run(config(server, tmp_path / "again", job=job_id))

    assert first == code == 0
    assert len(server.state.files) == uploads
    assert len(server.state.create_bodies) == 1
    assert f"following job {job_id}" in log
    assert json.loads((tmp_path / "again" / "run" / "openai_job.json").read_text())["status"] == "succeeded"


def test_rate_limits_and_server_errors_are_retried_honouring_retry_after(server, tmp_path, train_file):
    server.state.retry_after = "7"
    server.state.failures["POST /v1/files"] = [429, 503]
    server.state.failures["GET /v1/fine_tuning/jobs/ID"] = [500]
    sleeps: list[float] = []

    code, log = run(config(server, tmp_path, data=train_file), sleeps)

    assert code == 0
    assert log.count("retrying") == 3
    assert "HTTP 429" in log and "HTTP 503" in log and "HTTP 500" in log
    # The 429 carried Retry-After: 7, so the first back-off waited at least that long.
    assert sleeps[0] >= 7
    assert len(server.state.files) == 1  # the two failed uploads stored nothing
    record = json.loads((tmp_path / "run" / "openai_job.json").read_text())
    assert record["retries"] == 3


def test_transient_failures_past_the_budget_give_up_with_one_message(server, tmp_path, train_file):
    server.state.failures["POST /v1/files"] = [500] * 10

    with pytest.raises(UserError, match=r"upload train.jsonl failed \(gave up after retries\): HTTP 500"):
        run(config(server, tmp_path, data=train_file, max_retries=2))
    assert server.state.requests.count(("POST", "/v1/files")) == 3


def test_bad_key_fails_at_once_and_is_never_echoed(server, tmp_path, train_file, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-KEY-abcdef")

    code = cli(
        [
            "--backend",
            "openai",
            "--base-model",
            "gpt-4o-mini-2024-07-18",
            "--data",
            str(train_file),
            "--openai-base-url",
            server.base_url,
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: OpenAI upload train.jsonl failed: HTTP 401")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "sk-wrong-KEY-abcdef" not in err
    assert server.state.requests == [("POST", "/v1/files")]


def test_bad_request_is_not_retried(server, tmp_path, train_file):
    server.state.failures["POST /v1/fine_tuning/jobs"] = [400]

    with pytest.raises(UserError, match="create job failed: HTTP 400"):
        run(config(server, tmp_path, data=train_file))
    assert server.state.requests.count(("POST", "/v1/fine_tuning/jobs")) == 1


def test_lost_create_answer_reuses_the_job_instead_of_creating_a_second(server, tmp_path, train_file):
    server.state.lose_create_response = True

    code, _ = run(config(server, tmp_path, data=train_file))

    assert code == 0
    assert len(server.state.jobs) == 1


def test_failed_job_exits_one_with_the_reason(server, tmp_path, train_file):
    server.state.fail_jobs = True

    code, log = run(config(server, tmp_path, data=train_file))

    assert code == 1
    assert "failed: Training file has too few examples." in log
    record = json.loads((tmp_path / "run" / "openai_job.json").read_text())
    assert record["status"] == "failed" and record["fine_tuned_model"] is None


def test_cli_end_to_end_prints_the_model_and_keeps_the_key_out_of_every_output(
    server, tmp_path, train_file, capsys
):
    code = cli(
        [
            "--backend",
            "openai",
            "--base-model",
            "gpt-4o-mini-2024-07-18",
            "--data",
            str(train_file),
            "--openai-base-url",
            server.base_url,
            "--poll-interval",
            "0.01",
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )

    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip().startswith("ft:gpt-4o-mini-2024-07-18:org-test:")
    written = "".join(p.read_text() for p in (tmp_path / "run").rglob("*") if p.is_file())
    for text in (captured.out, captured.err, written):
        assert KEY not in text


def test_invalid_chat_file_is_refused_before_any_upload(server, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')

    with pytest.raises(UserError, match="no assistant message"):
        run(config(server, tmp_path, data=bad))
    assert server.state.requests == []


def test_missing_key_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = TrainConfig(backend="openai", base_model="gpt-4o-mini-2024-07-18", data=tmp_path / "x.jsonl")
    with pytest.raises(UserError, match="OPENAI_API_KEY is not set"):
        make_client(cfg)
