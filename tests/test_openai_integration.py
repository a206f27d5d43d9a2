"""`openai:` specs driven through langchain-openai against a real HTTP server on 127.0.0.1.

The judge is the real embedded all-MiniLM-L6-v2 unless a test swaps it.
"""

import json

import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from cli import main
from tests.conftest import FAKE_KEY, mock_augment_args

pytestmark = pytest.mark.integration


def augment(out, server, *flags, limit=3):
    return main(mock_augment_args(server, "--limit", str(limit), "--out", str(out), *flags))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plain_and_structured_calls_produce_judged_samples(tmp_path, mock_openai):
    out = tmp_path / "run"
    assert augment(out, mock_openai, "--n", "3") == 0
    records = read_jsonl(out / "samples.jsonl")
    manifest = json.loads((out / "manifest.json").read_text())

    assert {r["seed_id"] for r in records} == {"27", "28", "29"}
    assert {r["stage"] for r in records} == {"paraphrase", "synonym"}
    assert all(r["similarity"] >= 0.8 for r in records)
    assert all(r["generator"] == "openai:mock-model" and r["judge"] == "embed:local" for r in records)
    assert all(r["option"].startswith("1. Strongly agree") for r in records)
    # seed-file order in the final file
    assert [r["seed_id"] for r in records] == sorted((r["seed_id"] for r in records), key=int)

    chats = mock_openai.requests("/chat/completions")
    plain = [r for r in chats if "response_format" not in r.body]
    structured = [r for r in chats if "response_format" in r.body]
    assert len(plain) == 3  # one paraphrase call per seed: all three rewrites pass the judge
    assert len(structured) <= 3 * 3  # at most n synonym calls per seed, never one per word
    assert all(r.body["response_format"]["json_schema"]["name"] == "SynonymTable" for r in structured)
    assert manifest["counts"]["llm_calls"] == len(chats)
    assert manifest["counts"]["llm_calls"] <= 3 * (1 + 3)
    assert manifest["status"] == "completed"


def test_the_api_key_is_never_written_to_the_run(tmp_path, mock_openai):
    out = tmp_path / "run"
    assert augment(out, mock_openai, limit=1) == 0
    written = sorted(p.name for p in out.iterdir())
    assert "ledger.sqlite" in written and "checkpoints.sqlite" in written
    # samples, candidates, manifest, progress, the ledger and the graph checkpoints (binary) with WAL files
    for path in out.iterdir():
        assert FAKE_KEY.encode() not in path.read_bytes(), path.name
    assert FAKE_KEY[-12:] not in (out / "manifest.json").read_text()


def test_an_llm_judge_vetoes_what_embeddings_accept(tmp_path, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    config = ServerConfig(api_key=FAKE_KEY, contradiction_markers=("in my view",))
    with MockOpenAIServer(config) as server:
        out = tmp_path / "run"
        code = augment(out, server, "--judge", "embed:local", "--judge", "llm:openai:mock-model", limit=2)
        verdict_calls = [
            r
            for r in server.requests("/chat/completions")
            if (r.body.get("response_format") or {}).get("json_schema", {}).get("name")
            == "EquivalenceVerdicts"
        ]
    assert code == 0
    records = read_jsonl(out / "samples.jsonl")
    assert records
    assert not any(r["text"].lower().startswith("in my view") for r in records)
    assert all(r["judge"] == "embed:local+llm:openai:mock-model" for r in records)
    assert verdict_calls  # the LLM judge really was asked


def test_an_api_embedding_judge_embeds_in_batches(tmp_path, mock_openai):
    out = tmp_path / "run"
    assert augment(out, mock_openai, "--judge", "embed:openai:mock-embed", "--threshold", "0.5", limit=2) == 0
    batches = mock_openai.requests("/embeddings")
    texts = [
        t
        for r in batches
        for t in (r.body["input"] if isinstance(r.body["input"], list) else [r.body["input"]])
    ]
    assert batches and len(texts) > len(batches)  # several candidates per request
    records = read_jsonl(out / "samples.jsonl")
    assert records and all(
        r["judge"] == "embed:openai:mock-embed" and r["similarity"] >= 0.5 for r in records
    )


def test_transient_faults_are_retried_until_every_seed_finishes(tmp_path, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    config = ServerConfig(
        api_key=FAKE_KEY,
        fault_rate=0.3,
        fault_kinds=("429", "500", "503", "malformed"),
        retry_after_s=0.05,
        seed=7,
    )
    with MockOpenAIServer(config) as server:
        out = tmp_path / "run"
        assert augment(out, server, "--max-attempts", "8") == 0
        faults = [r for r in server.log if r.fault]
    manifest = json.loads((out / "manifest.json").read_text())
    assert faults, "the server injected no fault; the test proves nothing"
    assert manifest["counts"]["seeds_done"] == 3
    retries = sum(step["retries"] for step in manifest["usage_by_step"].values())
    assert retries >= len(faults)


def test_a_rejected_key_fails_fast_with_exit_2(tmp_path, no_provider_env, capsys):
    no_provider_env.setenv("OPENAI_API_KEY", "sk-wrong")
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        code = augment(tmp_path / "run", server)
        attempts = len(server.log)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "OPENAI_API_KEY" in err and "401" in err and len(err.splitlines()) == 1
    assert "sk-wrong" not in err
    assert attempts <= 2  # no retry storm
    assert not (tmp_path / "run").exists()


def test_an_unreachable_server_is_one_line_and_exit_2(tmp_path, no_provider_env, capsys):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    server = MockOpenAIServer()
    url = server.base_url
    server.stop()  # nothing listens on that port any more
    code = main(
        ["augment", "--quiet", "--generator", "openai:m", "--base-url", url, "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "cannot reach" in err and url in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
