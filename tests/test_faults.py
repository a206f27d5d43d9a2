"""Runs survive a faulty provider; seeds that exhaust their retries are marked failed and redone on resume."""

import json

import pytest

from bench.mock_openai_server import FAULT_KINDS, MockOpenAIServer, ServerConfig
from cli import main
from storage.seeds import DEFAULT_SEEDS, load_seeds
from tests.conftest import FAKE_KEY, mock_augment_args

pytestmark = pytest.mark.integration


def augment(server, *flags):
    return main(mock_augment_args(server, *flags))


def test_twenty_percent_faults_of_every_kind_still_finish_every_seed(tmp_path, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    config = ServerConfig(
        api_key=FAKE_KEY, fault_rate=0.2, fault_kinds=FAULT_KINDS, hang_s=2.0, retry_after_s=0.05, seed=3
    )
    with MockOpenAIServer(config) as server:
        out = tmp_path / "run"
        assert (
            augment(
                server,
                "--limit",
                "10",
                "--n",
                "3",
                "--timeout",
                "1",
                "--max-attempts",
                "10",
                "--out",
                str(out),
            )
            == 0
        )
        kinds = {r.fault for r in server.log if r.fault}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["seeds_done"] == 10 and manifest["status"] == "completed"
    assert len(kinds) >= 3, f"too few fault kinds were injected to prove anything: {kinds}"


def test_seeds_that_exhaust_retries_are_marked_failed_and_resume_redoes_exactly_them(
    tmp_path, no_provider_env
):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    out = tmp_path / "run"
    flaky = ServerConfig(api_key=FAKE_KEY, fault_rate=0.5, fault_kinds=("500",), seed=11)
    with MockOpenAIServer(flaky) as server:
        code = augment(server, "--limit", "6", "--n", "2", "--max-attempts", "2", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    failed = {q for q, s in manifest["seeds"].items() if s["failure"]}
    assert code == 1 and manifest["status"] == "completed_with_failures"
    assert failed, "no seed failed; the test proves nothing"
    assert all("gave up after 2 attempts" in manifest["seeds"][q]["failure"] for q in failed)

    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as healthy:
        assert augment(healthy, "--resume", str(out)) == 0
        asked = {
            seed_line.split("Sentence: ", 1)[1]
            for r in healthy.requests("/chat/completions")
            if "response_format" not in r.body
            for seed_line in [r.body["messages"][-1]["content"]]
        }
    seeds = {s.q_id: s.q_content for s in load_seeds(DEFAULT_SEEDS)}
    # only the failed seeds' paraphrase requests reached the healthy server
    assert asked <= {seeds[q] for q in failed}
    final = json.loads((out / "manifest.json").read_text())
    assert final["status"] == "completed" and final["counts"]["seeds_done"] == 6
