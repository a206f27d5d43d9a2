"""A real `augment` process is killed (SIGKILL, SIGTERM) mid-run and resumed: nothing is lost,
nothing is duplicated, and completed calls are not paid for twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from cli import main
from tests.conftest import FAKE_KEY, mock_augment_args

pytestmark = [pytest.mark.slow, pytest.mark.integration]
ROOT = Path(__file__).resolve().parent.parent
SEEDS = "6"


def generator_calls(server):
    return len(server.requests("/chat/completions"))


def start(server, out):
    env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "HF_HUB_OFFLINE": "1"}
    flags = ["--limit", SEEDS, "--n", "3", "--concurrency", "2", "--out", str(out)]
    command = [sys.executable, "cli.py", *mock_augment_args(server, *flags)]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_progress(out, seeds_done, process, timeout=120):
    deadline = time.monotonic() + timeout
    progress = out / "progress.jsonl"
    while time.monotonic() < deadline:
        if progress.exists() and len(progress.read_text().splitlines()) >= seeds_done:
            return
        if process.poll() is not None:
            pytest.fail(f"augment ended before it was killed: {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("augment made no progress")


@pytest.fixture
def server(no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, latency_s=0.15)) as running:
        yield running


@pytest.fixture
def uninterrupted(tmp_path, server):
    out = tmp_path / "whole"
    assert main(mock_augment_args(server, "--limit", SEEDS, "--n", "3", "--out", str(out))) == 0
    calls = generator_calls(server)
    server.log.clear()
    return out, calls


@pytest.mark.parametrize(
    ("sig", "after_seeds"), [(signal.SIGKILL, 1), (signal.SIGKILL, 3), (signal.SIGTERM, 2)]
)
def test_killed_then_resumed_equals_uninterrupted(tmp_path, server, uninterrupted, sig, after_seeds):
    whole, whole_calls = uninterrupted
    out = tmp_path / "killed"
    process = start(server, out)
    wait_for_progress(out, after_seeds, process)
    process.send_signal(sig)
    printed, err = process.communicate(timeout=60)
    assert FAKE_KEY not in printed + err  # nor in what the process logged
    if sig == signal.SIGTERM:
        assert process.returncode == 130
        assert f"augment --resume {out}" in err
        assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    # a kill can land in the middle of a line: the resume must cope with whatever is on disk

    assert main(["augment", "--quiet", "--resume", str(out), "--base-url", server.base_url]) == 0
    resumed = (out / "samples.jsonl").read_text().splitlines()
    assert resumed == (whole / "samples.jsonl").read_text().splitlines()
    assert generator_calls(server) <= 1.1 * whole_calls
    for path in out.iterdir():  # manifest, samples, ledger, checkpoints, their WAL files
        assert FAKE_KEY.encode() not in path.read_bytes(), path.name
