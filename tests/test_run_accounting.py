"""A run's manifest accounts for every process that worked on it: one segment per process, and
totals that are the sums of the segments and match what the provider (the mock server) served."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from cli import main
from graphs.accounting import earlier_segments, sum_usage
from tests.conftest import FAKE_KEY, mock_augment_args

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ("--limit", "3", "--n", "3", "--concurrency", "1")


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def served(server) -> int:
    """Chat completions the server answered (HTTP 200)."""
    return len(server.requests("/chat/completions"))


def assert_totals_are_the_sums_of_the_segments(manifest: dict) -> None:
    segments = manifest["segments"]
    assert manifest["started_at"] == segments[0]["started_at"]
    assert manifest["counts"]["llm_calls"] == sum(s["llm_calls"] for s in segments)
    assert manifest["usage_by_step"] == sum_usage(s["usage_by_step"] for s in segments)
    assert manifest["ledger"]["hits"] == sum(s["ledger"]["hits"] for s in segments)
    assert manifest["duration_s"] == pytest.approx(sum(s["duration_s"] for s in segments), abs=0.02)


def revoke_key_after(server, requests: int) -> threading.Thread:
    """The server starts refusing the key once it has seen `requests` chat requests (a key revoked
    mid-run): the run stops with a fatal error, a real interruption at an unpredictable point."""

    def watch() -> None:
        while len(server.requests("/chat/completions", status=None)) < requests:
            time.sleep(0.002)
        server.config.api_key = "sk-revoked"

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.integration
def test_a_run_stopped_then_resumed_accounts_for_both_processes(tmp_path, mock_openai, capsys):
    out = tmp_path / "run"
    revoke_key_after(mock_openai, 5)
    assert main(mock_augment_args(mock_openai, *FLAGS, "--out", str(out))) == 2
    assert "HTTP 401" in capsys.readouterr().err
    stopped = manifest_of(out)
    assert stopped["status"] == "failed"
    assert stopped["segments"][0]["llm_calls"] == served(mock_openai) >= 5

    mock_openai.config.api_key = FAKE_KEY  # the key is valid again
    assert main(mock_augment_args(mock_openai, *FLAGS, "--out", str(out))) == 0
    manifest = manifest_of(out)
    first, second = manifest["segments"]
    assert [first["status"], second["status"]] == ["failed", "completed"]
    assert first == stopped["segments"][0]  # the stopped process's record is kept as it was
    assert first["ended_at"] <= second["started_at"]
    assert_totals_are_the_sums_of_the_segments(manifest)
    # every answer the server gave was counted once, by the process that received it
    assert manifest["counts"]["llm_calls"] == served(mock_openai)


@pytest.mark.integration
def test_the_whole_work_is_the_same_as_an_uninterrupted_runs(tmp_path, mock_openai):
    whole = tmp_path / "whole"
    assert main(mock_augment_args(mock_openai, *FLAGS, "--out", str(whole))) == 0
    uninterrupted = served(mock_openai)
    mock_openai.log.clear()

    out = tmp_path / "run"
    revoke_key_after(mock_openai, 7)
    assert main(mock_augment_args(mock_openai, *FLAGS, "--out", str(out))) == 2
    mock_openai.config.api_key = FAKE_KEY
    assert main(mock_augment_args(mock_openai, "--resume", str(out))) == 0
    assert manifest_of(out)["counts"]["llm_calls"] == served(mock_openai) == uninterrupted
    assert (out / "samples.jsonl").read_text() == (whole / "samples.jsonl").read_text()


@pytest.fixture
def slow_server(no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, latency_s=0.1)) as running:
        yield running


def start_process(server, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "HF_HUB_OFFLINE": "1"}
    flags = ["--limit", "6", "--n", "3", "--concurrency", "1", "--out", str(out)]
    command = [sys.executable, "cli.py", *mock_augment_args(server, *flags)]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until(done, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not done():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"augment ended or stalled before the signal: {process.stderr.read()}")
        time.sleep(0.02)


def seeds_finished(out: Path) -> int:
    progress = out / "progress.jsonl"
    return len(progress.read_text().splitlines()) if progress.exists() else 0


def recorded(out: Path, field: str) -> int:
    """A count the running process has recorded in its latest manifest snapshot (llm_calls, items_finished)."""
    try:
        return manifest_of(out)["segments"][-1][field]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, "interrupted"), (signal.SIGKILL, "aborted")])
def test_a_killed_process_keeps_its_segment(tmp_path, slow_server, sig, status):
    out = tmp_path / "run"
    process = start_process(slow_server, out)
    if sig == signal.SIGKILL:  # nothing runs after a kill -9: its last snapshot is its record
        # The snapshot itself must hold the finished seed: progress.jsonl is written at once, the
        # snapshot a moment later, and a busy machine can stretch that moment past the kill.
        wait_until(lambda: recorded(out, "llm_calls") > 0 and recorded(out, "items_finished") >= 1, process)
    else:
        wait_until(lambda: seeds_finished(out) >= 1, process)
    process.send_signal(sig)
    process.communicate(timeout=60)
    assert main(["augment", "--quiet", "--resume", str(out), "--base-url", slow_server.base_url]) == 0

    manifest = manifest_of(out)
    first, second = manifest["segments"]
    assert [first["status"], second["status"]] == [status, "completed"]
    assert first["items_finished"] >= 1 and first["llm_calls"] > 0
    assert_totals_are_the_sums_of_the_segments(manifest)
    lost = served(slow_server) - manifest["counts"]["llm_calls"]
    if sig == signal.SIGTERM:  # at most the call in flight was served but never received
        assert 0 <= lost <= 1
    else:  # and a kill -9 loses what the process did after its last snapshot
        assert lost >= 0


def test_a_segment_left_running_by_a_dead_process_is_marked_aborted():
    manifest = {
        "segments": [
            {"started_at": "t0", "ended_at": "t1", "status": "interrupted", "llm_calls": 3},
            {"started_at": "t2", "ended_at": None, "updated_at": "t3", "status": "running", "llm_calls": 4},
        ]
    }
    first, second = earlier_segments(manifest)
    assert first == manifest["segments"][0]
    assert second["status"] == "aborted" and second["ended_at"] == "t3" and second["llm_calls"] == 4


def test_a_manifest_from_before_segments_becomes_the_first_segment():
    usage = {"paraphrase": {"calls": 5, "replayed": 1, "input_tokens": 50}, "embed": {"calls": 9}}
    manifest = {
        "status": "interrupted",
        "started_at": "t0",
        "finished_at": "t1",
        "duration_s": 2.5,
        "usage_by_step": usage,
        "ledger": {"hits": 1, "misses": 5},
        "counts": {"seeds_done": 2},
    }
    (segment,) = earlier_segments(manifest)
    assert segment["status"] == "interrupted" and segment["started_at"] == "t0"
    assert segment["llm_calls"] == 4 and segment["llm_calls_replayed"] == 1  # embeddings are not LLM calls
    assert segment["usage_by_step"] == usage and segment["items_finished"] == 2
