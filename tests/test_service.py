"""`python cli.py serve` as its users meet it: a real uvicorn process on 127.0.0.1 with the loopback
OpenAI-compatible server behind it, driven over HTTP with a bearer token.

Shared limits, a SIGKILL in the middle of a job, cancel and resume, the token on every route, file
paths that try to leave the run directory, and invalid jobs are each checked against what the server
and its run directories really hold afterwards."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from cli import main
from tests.conftest import FAKE_KEY, mock_augment_args
from tests.loopback import free_loopback_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
TOKEN = "service-test-token-3b1f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class ServeProcess:
    """`python cli.py serve` in a subprocess, its output in files (read after it ends)."""

    def __init__(self, runs: Path, *flags: str, token: str | None = TOKEN) -> None:
        self.runs, self.flags, self.token = runs, flags, token
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log = runs.parent / f"serve-{self.port}.log"

    def start(self, timeout: float = 90.0) -> ServeProcess:
        env = {**os.environ, "OPENAI_API_KEY": FAKE_KEY, "HF_HUB_OFFLINE": "1"}
        env.pop("CULTURE_FORGE_TOKEN", None)
        if self.token:
            env["CULTURE_FORGE_TOKEN"] = self.token
        command = [sys.executable, "cli.py", "serve", "--port", str(self.port), "--runs-dir", str(self.runs)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.flags], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", headers=AUTH, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"serve did not answer within {timeout} s: {self.log.read_text()}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def mock(no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, latency_s=0.15)) as running:
        yield running


@pytest.fixture
def serve(tmp_path, mock):
    started: list[ServeProcess] = []

    def start(*flags: str, runs: Path | None = None) -> ServeProcess:
        # Jobs name the loopback server as their base_url, which a server must allow explicitly.
        allow = ("--allow-base-url", mock.base_url)
        server = ServeProcess(runs or tmp_path / "runs", *allow, *flags).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def augment_args(mock, **extra) -> dict:
    return {"generator": "openai:mock-model", "base_url": mock.base_url} | extra


def submit(client: httpx.Client, command: str, args: dict) -> dict:
    """A new job (it must be accepted)."""
    answer = client.post("/v1/jobs", json={"command": command, "args": args})
    assert answer.status_code == 201, answer.text
    return answer.json()


def wait_for(client: httpx.Client, job_id: str, done, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job_id} never got there: {job}")


def finished(job: dict) -> bool:
    return job["status"] in ("completed", "completed_with_failures", "failed", "cancelled")


def progress_lines(run_dir: Path) -> int:
    path = run_dir / "progress.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_two_jobs_together_stay_within_the_server_wide_rpm_and_share_it(tmp_path, mock, serve):
    rpm = 180  # 30 requests in any 10 seconds, for both jobs together
    server = serve("--limit", f"openai:rpm={rpm},concurrency=8")
    with server.client() as client:
        # Told apart at the mock server by the model each asks for.
        big = submit(client, "augment", augment_args(mock, limit=10, n=3, generator="openai:mock-big"))
        time.sleep(1.0)  # the big job has its queue full before the small one comes
        small = submit(client, "augment", augment_args(mock, limit=1, n=3, generator="openai:mock-small"))
        big_job = wait_for(client, big["id"], finished)
        small_job = wait_for(client, small["id"], finished)
    assert big_job["status"] == small_job["status"] == "completed"
    shared = big_job["manifest"]["segments"][-1]["rate"]["shared_gates"]  # the manifest says which gate
    assert [gate["rpm_limit"] for name, gate in shared.items() if name.startswith("openai ")] == [rpm]

    times = sorted(r.arrived or r.at for r in mock.requests(path_suffix=""))
    assert len(times) > rpm / 6, "too few requests to test the limit"
    busiest = max(sum(1 for t in times if start <= t < start + 10.0) for start in times)
    assert busiest <= rpm / 6, f"{busiest} requests in one 10-second window"

    def calls_of(model: str) -> list[float]:
        return [r.arrived or r.at for r in mock.requests() if (r.body or {}).get("model") == model]

    small_calls, big_calls = calls_of("mock-small"), calls_of("mock-big")
    assert small_calls and big_calls
    # Fair shares: the small job is not queued behind the big one's backlog; it is done first.
    assert max(small_calls) < max(big_calls)
    assert small_job["finished"] <= big_job["finished"]


def test_a_job_survives_a_server_sigkill_and_finishes_as_if_uninterrupted(tmp_path, mock, serve):
    whole = tmp_path / "whole"
    flags = ["--limit", "6", "--n", "3", "--concurrency", "2", "--out", str(whole)]
    assert main(mock_augment_args(mock, *flags)) == 0
    whole_calls = len(mock.requests("/chat/completions"))
    mock.log.clear()

    runs = tmp_path / "runs"
    # Calls in flight are bounded by the server's gate for the provider, not by the job's own
    # concurrency (which bounds its items): two at once, so at most two can be paid twice.
    limit = ("--limit", "openai:concurrency=2")
    server = serve(*limit, runs=runs)
    with server.client() as client:
        job = submit(client, "augment", augment_args(mock, limit=6, n=3, concurrency=2))
    run_dir = Path(job["run_dir"])
    deadline = time.monotonic() + 120
    while progress_lines(run_dir) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert progress_lines(run_dir) >= 2, "the job made no progress"
    server.kill()
    assert progress_lines(run_dir) < 6, "the job finished before the kill: nothing was tested"

    restarted = serve(*limit, runs=runs)  # resumes the job it finds unfinished in the job table
    with restarted.client() as client:
        done = wait_for(client, job["id"], finished)
        samples = client.get(f"/v1/jobs/{job['id']}/files/samples.jsonl")
    assert done["status"] == "completed" and done["starts"] == 2
    assert samples.text.splitlines() == (whole / "samples.jsonl").read_text().splitlines()
    # Answers received before the kill are replayed from the ledger; only the calls in flight at
    # the kill (at most the gate's two) can have been asked twice.
    assert len(mock.requests("/chat/completions")) <= whole_calls + 2
    for path in [*run_dir.rglob("*"), restarted.log]:
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_a_cancelled_job_is_left_resumable_and_resumes_to_the_end(tmp_path, mock, serve):
    server = serve()
    with server.client() as client:
        job = submit(client, "augment", augment_args(mock, limit=6, n=3, concurrency=2))
        run_dir = Path(job["run_dir"])
        wait_for(client, job["id"], lambda j: progress_lines(run_dir) >= 1)
        cancelled = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "interrupted"
        assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409  # nothing left to cancel
        kept = progress_lines(run_dir)
        assert kept < 6

        resumed = client.post(f"/v1/jobs/{job['id']}/resume")
        assert resumed.status_code == 202, resumed.text
        done = wait_for(client, job["id"], finished)
        events = client.get(f"/v1/jobs/{job['id']}/events").text
    assert done["status"] == "completed" and done["progress"] == {"done": 6, "failed": 0, "total": 6}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and len(manifest["segments"]) == 2
    # The event stream replays the job's life from the start and ends with its end.
    assert "event: end" in events and '"status": "completed"' in events.split("event: end")[-1]
    last_progress = events.rsplit("event: progress\ndata: ", 1)[1].split("\n", 1)[0]
    assert json.loads(last_progress) == {"done": 6, "failed": 0, "total": 6}


def test_every_route_wants_the_token(tmp_path, mock, serve):
    server = serve()
    with server.client() as client:
        job = submit(client, "augment", augment_args(mock, limit=1, n=1))
        routes = client.get("/openapi.json").json()["paths"]
    assert sum(len(methods) for methods in routes.values()) == 9  # the API's every operation
    calls = [("GET", "/docs"), ("GET", "/openapi.json")]
    for path, methods in routes.items():
        concrete = path.replace("{job_id}", job["id"]).replace("{relative}", "manifest.json")
        calls.extend((method.upper(), concrete) for method in methods)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in calls:
            answer = httpx.request(method, server.url + path, headers=headers, json={}, timeout=30)
            assert answer.status_code == 401, (method, path, headers, answer.status_code)
            assert TOKEN not in answer.text


def test_a_file_path_cannot_leave_the_run_directory(tmp_path, mock, serve):
    server = serve()
    with server.client() as client:
        job = submit(client, "augment", augment_args(mock, limit=1, n=1))
        wait_for(client, job["id"], finished)
        assert client.get(f"/v1/jobs/{job['id']}/files/manifest.json").json()["status"] == "completed"
        assert "samples.jsonl" in client.get(f"/v1/jobs/{job['id']}/files").json()
    for path in (
        "../jobs.sqlite",
        "%2e%2e/jobs.sqlite",
        "..%2fjobs.sqlite",
        "/etc/passwd",
        "a/../../jobs.sqlite",
    ):
        # http.client sends the path as written (httpx would tidy the dots away first).
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", f"/v1/jobs/{job['id']}/files/{path}", headers=AUTH)
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        assert answer.status in (400, 404), (path, answer.status)
        assert b"SQLite format" not in body and b"root:" not in body, path


def test_an_invalid_job_is_422_naming_the_field_and_runs_nothing(tmp_path, mock, serve):
    runs = tmp_path / "runs"
    server = serve(runs=runs)
    cases = [
        ({"command": "augment", "args": {"n": "many"}}, ["body", "args", "n"]),
        ({"command": "augment", "args": {"generatr": "openai:x"}}, ["body", "args", "generatr"]),
        ({"command": "augment", "args": {"out": "/tmp/elsewhere"}}, ["body", "args", "out"]),
        ({"command": "train", "args": {}}, ["body", "command"]),
        ({"command": "evaluate", "args": {"suite": "quiz"}}, ["body", "args", "suite"]),
        ({"args": {}}, ["body", "command"]),
        ({"command": "rejudge", "args": {"source": "no-such-job"}}, ["body", "args", "source"]),
        # The server's key must not go to a server a job names.
        ({"command": "augment", "args": {"base_url": "http://127.0.0.1:9/v1"}}, ["body", "args", "base_url"]),
    ]
    with server.client() as client:
        for body, loc in cases:
            answer = client.post("/v1/jobs", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["detail"][0]["loc"] == loc, answer.json()
        assert client.post("/v1/jobs", content=b"{not json").status_code == 422
        too_big = client.post("/v1/jobs", content=b"{" + b" " * (2 << 20) + b"}")
        assert too_big.status_code == 413
        assert client.get("/v1/jobs").json() == []
    assert [p.name for p in runs.iterdir() if p.is_dir()] == []  # no run directory was made


def test_the_server_refuses_another_interface_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CULTURE_FORGE_TOKEN"}
    command = [sys.executable, "cli.py", "serve", "--host", "0.0.0.0", "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --host 0.0.0.0:") and "CULTURE_FORGE_TOKEN" in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_every_job_kind_runs_and_a_job_can_name_an_earlier_one_by_its_id(tmp_path, mock, serve):
    server = serve()
    api = {"base_url": mock.base_url}
    embed = "embed:openai:mock-embed"
    with server.client() as client:
        augment = submit(client, "augment", augment_args(mock, limit=2, n=2, judge=[embed]))
        park = submit(client, "culturepark", {**api, "culture": "Arabic", "limit": 1, "turns": 1,
                                              "generator": "openai:mock-model", "verifier": "llm:openai:mock-judge",
                                              "embedder": embed})  # fmt: skip
        survey = submit(client, "evaluate", {**api, "suite": "hofstede", "culture": "German",
                                             "models": ["openai:mock-a"]})  # fmt: skip
        assert wait_for(client, augment["id"], finished)["status"] == "completed"
        # Later jobs name the augment job's run by its id: relative paths are read in the runs directory.
        rejudge = submit(
            client, "rejudge", {**api, "source": augment["id"], "judge": [embed], "threshold": 0.5}
        )
        built = submit(
            client, "build-dataset", {"culture": "Arabic", "samples": f"{augment['id']}/samples.jsonl"}
        )
        jobs = {name: wait_for(client, job["id"], finished) for name, job in
                [("culturepark", park), ("evaluate", survey), ("rejudge", rejudge), ("build-dataset", built)]}  # fmt: skip
        files = {name: client.get(f"/v1/jobs/{job['id']}/files").json() for name, job in jobs.items()}
    assert {name: job["status"] for name, job in jobs.items()} == dict.fromkeys(jobs, "completed"), jobs
    assert "opinions.jsonl" in files["culturepark"] and "results.json" in files["evaluate"]
    assert "samples.jsonl" in files["rejudge"] and "labels.jsonl" in files["build-dataset"]
    assert jobs["rejudge"]["manifest"]["config"]["source"] == str(server.runs.resolve() / augment["id"])


def test_a_second_server_on_the_same_runs_directory_is_refused(tmp_path, mock, serve):
    server = serve()
    command = [sys.executable, "cli.py", "serve", "--port", "1", "--runs-dir", str(server.runs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "in use by another server" in done.stderr, done.stderr
