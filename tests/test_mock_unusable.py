"""The mock server's unusable answers: healthy 200s whose content a client cannot use, drawn per
request so that runs repeat, and asked again by the pipeline until it gets a usable one."""

import json
import subprocess
import sys

import httpx
import pytest

from agents.json_answers import MalformedOutput
from agents.judge import parse_equivalence_verdicts
from agents.substitutor import parse_synonym_table
from bench.mock_openai_server import UNUSABLE, MockOpenAIServer, ServerConfig, is_unusable
from cli import main
from tests.conftest import FAKE_KEY, mock_augment_args

pytestmark = pytest.mark.integration


def chat_body(sentence: str, schema_name: str | None) -> dict:
    body = {"model": "mock-model", "messages": [{"role": "user", "content": f"Sentence: {sentence}"}]}
    if schema_name is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": schema_name, "schema": {}}}
    return body


def ask(server: MockOpenAIServer, body: dict) -> str:
    answer = httpx.post(
        f"{server.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {FAKE_KEY}"}
    )
    assert answer.status_code == 200  # unusable, not failing: the server is healthy
    return answer.json()["choices"][0]["message"]["content"]


def test_unusable_structured_answers_are_ones_the_clients_parsers_refuse():
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, unusable_rate=1.0)) as server:
        table = ask(server, chat_body("Jobs are scarce.", "SynonymTable"))
        verdicts = ask(server, chat_body("Jobs are scarce.\n1. Posts are scarce.", "EquivalenceVerdicts"))
        rewrites = ask(server, chat_body("Jobs are scarce.", None))
        faults = [r.fault for r in server.requests()]

    with pytest.raises(MalformedOutput):
        parse_synonym_table(table)
    with pytest.raises(MalformedOutput):
        parse_equivalence_verdicts(verdicts, count=1)
    assert "In my view, jobs are scarce." in rewrites  # free-form answers stay usable
    assert faults == [UNUSABLE, UNUSABLE, None]


def test_the_share_of_unusable_answers_is_near_the_rate_and_a_re_ask_draws_afresh():
    requests = [f"request {i}" for i in range(4000)]
    first = [is_unusable(7, key, 0, 0.05) for key in requests]
    again = [is_unusable(7, key, 1, 0.05) for key in requests]

    assert 0.04 < sum(first) / len(requests) < 0.06
    assert 0.04 < sum(again) / len(requests) < 0.06
    # A request that got an unusable answer is not doomed to get one again.
    assert sum(f and a for f, a in zip(first, again, strict=True)) < sum(first) / 4
    assert first != [is_unusable(8, key, 0, 0.05) for key in requests]  # the seed matters


def test_the_same_requests_meet_the_same_unusable_answers_in_any_order():
    sentences = [f"Jobs number {i} are scarce." for i in range(40)]

    def unusable_sentences(order: list[str]) -> set[str]:
        config = ServerConfig(api_key=FAKE_KEY, unusable_rate=0.3, seed=5)
        with MockOpenAIServer(config) as server:
            return {s for s in order if ask(server, chat_body(s, "SynonymTable")) == '{"words": []}'}

    forwards = unusable_sentences(sentences)
    assert forwards == unusable_sentences(sentences[::-1])
    assert 0 < len(forwards) < len(sentences)


def test_a_run_asks_unusable_synonym_tables_again_and_finishes_every_seed(tmp_path, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    out = tmp_path / "run"
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, unusable_rate=0.3, seed=3)) as server:
        code = main(
            mock_augment_args(
                server, "--limit", "3", "--n", "3", "--judge", "embed:openai:mock-embed", "--out", str(out)
            )
        )
        unusable = [r for r in server.requests() if r.fault == UNUSABLE]
    manifest = json.loads((out / "manifest.json").read_text())

    assert code == 0 and manifest["counts"]["seeds_done"] == 3
    assert unusable, "the server sent no unusable answer; the test proves nothing"
    assert manifest["usage_by_step"]["synonyms"]["retries"] == len(unusable)


def test_the_servers_command_line_refuses_a_share_outside_0_to_1():
    result = subprocess.run(
        [sys.executable, "-m", "bench.mock_openai_server", "--unusable", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "'5' is not a share between 0 and 1" in result.stderr


@pytest.mark.slow
def test_the_benchmark_counts_every_unusable_answer_in_its_ideal():
    result = subprocess.run(
        [sys.executable, "-m", "bench.augment_bench", "--seeds", "3", "--n", "2", "--concurrency", "4"]
        + ["--latency", "0.05", "--unusable", "0", "0.5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    runs = result.stdout.split("--- ")[1:]
    assert [run.splitlines()[0] for run in runs] == [
        "0% unusable answers, run 1 of 1",
        "50% unusable answers, run 1 of 1",
    ]

    def number(run: str, label: str) -> float:
        line = next(line for line in run.splitlines() if line.startswith(label))
        return float(line[len(label) :].split()[0])

    clean, flawed = runs
    assert number(clean, "unusable answers") == 0
    unusable = number(flawed, "unusable answers")
    assert unusable > 0
    # Every unusable answer was a request the server served at full latency: the ideal counts it.
    assert number(flawed, "ideal time") == pytest.approx(number(flawed, "requests") * 0.05 / 4, abs=0.006)
    without = number(flawed, "ideal without unusable")
    assert without == pytest.approx((number(flawed, "requests") - unusable) * 0.05 / 4, abs=0.006)
    assert (
        "median ratio at   0% unusable" in result.stdout and "median ratio at  50% unusable" in result.stdout
    )
