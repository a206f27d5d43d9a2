"""`rejudge` applies another judge or threshold to a finished run's candidates and never calls the generator."""

import json
import time

import pytest

from cli import main
from tests.loopback import free_loopback_port

pytestmark = pytest.mark.integration


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def finished_run(tmp_path, mock_openai):
    out = tmp_path / "run"
    flags = [
        "--generator",
        "openai:mock-model",
        "--base-url",
        mock_openai.base_url,
        "--limit",
        "3",
        "--n",
        "3",
    ]
    assert main(["augment", "--quiet", *flags, "--out", str(out)]) == 0
    return out


def test_a_stricter_threshold_makes_no_generator_call(tmp_path, finished_run, mock_openai):
    chats_before = len(mock_openai.requests("/chat/completions", status=None))
    out = tmp_path / "strict"
    assert main(["rejudge", str(finished_run), "--threshold", "0.9", "--out", str(out)]) == 0
    assert len(mock_openai.requests("/chat/completions", status=None)) == chats_before

    strict = read_jsonl(out / "samples.jsonl")
    original = read_jsonl(finished_run / "samples.jsonl")
    candidates = {c["text"] for c in read_jsonl(finished_run / "candidates.jsonl")}
    assert strict and len(strict) <= len(original)
    assert all(r["similarity"] >= 0.9 for r in strict)
    assert {r["text"] for r in strict} <= candidates
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "rejudge" and manifest["counts"]["generator_calls"] == 0


def test_a_laxer_threshold_keeps_candidates_the_first_judge_rejected(tmp_path, finished_run):
    rejected = [c for c in read_jsonl(finished_run / "candidates.jsonl") if not c["accepted"]]
    out = tmp_path / "lax"
    assert main(["rejudge", str(finished_run), "--threshold", "0.0", "--m", "50", "--out", str(out)]) == 0
    kept = {r["text"] for r in read_jsonl(out / "samples.jsonl")}
    assert {c["text"] for c in rejected} <= kept


def test_rejudge_with_an_api_embedding_judge(tmp_path, finished_run, mock_openai):
    out = tmp_path / "api"
    code = main(
        [
            "rejudge",
            str(finished_run),
            "--judge",
            "embed:openai:mock-embed",
            "--threshold",
            "0.5",
            "--base-url",
            mock_openai.base_url,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert mock_openai.requests("/embeddings")
    assert all(r["judge"] == "embed:openai:mock-embed" for r in read_jsonl(out / "samples.jsonl"))


def test_rejudge_refuses_what_is_not_a_finished_run(tmp_path, capsys):
    assert main(["rejudge", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def rejudge_with_api_judge(run, out, base_url):
    return main(
        ["rejudge", str(run), "--judge", "embed:openai:mock-embed", "--base-url", base_url, "--out", str(out)]
    )


def test_a_wrong_key_is_one_line_before_the_output_is_made(tmp_path, finished_run, mock_openai, capsys):
    mock_openai.config.api_key = "sk-the-server-wants-another-key"
    out = tmp_path / "api"
    started = time.monotonic()
    assert rejudge_with_api_judge(finished_run, out, mock_openai.base_url) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err.strip()
    assert err == f"error: {mock_openai.base_url} rejected the API key in OPENAI_API_KEY (HTTP 401)"
    assert not out.exists()
    assert not mock_openai.requests("/embeddings", status=None)


def test_an_unreachable_server_is_one_line_before_the_output_is_made(tmp_path, finished_run, capsys):
    out = tmp_path / "api"
    port = free_loopback_port()
    assert rejudge_with_api_judge(finished_run, out, f"http://127.0.0.1:{port}/v1") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach the OpenAI-compatible server at http://127.0.0.1:{port}/v1")
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_a_rejudge_runs_on_the_shared_runner_and_resumes_from_its_ledger(tmp_path, finished_run, mock_openai):
    out = tmp_path / "api"
    assert rejudge_with_api_judge(finished_run, out, mock_openai.base_url) == 0
    embedded = len(mock_openai.requests("/embeddings"))
    samples = (out / "samples.jsonl").read_text()
    assert embedded and (out / "progress.jsonl").exists() and (out / "ledger.sqlite").exists()

    assert main(["rejudge", "--resume", str(out)]) == 0
    assert len(mock_openai.requests("/embeddings")) == embedded  # nothing asked again
    assert (out / "samples.jsonl").read_text() == samples
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "rejudge" and len(manifest["segments"]) == 2
    assert manifest["config"]["judge"] == ["embed:openai:mock-embed"]
