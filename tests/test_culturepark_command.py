"""`python cli.py culturepark` end to end: against the loopback OpenAI-compatible server (faults, a
bad key, a kill and a resume) and on the embedded models; its opinions feed `build-dataset`."""

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
from storage.records import DialogueRecord, OpinionRecord
from tests.conftest import FAKE_KEY

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def mock_flags(server, *flags: str) -> list[str]:
    return [
        "culturepark",
        "--quiet",
        "--generator",
        "openai:mock-model",
        "--verifier",
        "llm:openai:mock-judge",
        "--embedder",
        "embed:openai:mock-embed",
        "--base-url",
        server.base_url,
        *flags,
    ]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_writes_dialogues_opinions_and_a_manifest(tmp_path, mock_openai):
    out = tmp_path / "run"
    assert main(mock_flags(mock_openai, "--limit", "2", "--turns", "3", "--out", str(out))) == 0
    dialogues = [DialogueRecord(**d) for d in lines(out / "dialogues.jsonl")]
    assert [(d.culture, d.seed_id, len(d.turns)) for d in dialogues] == [
        ("Arabic", "27", 6),
        ("Arabic", "28", 6),
    ]
    names = [p["name"] for p in dialogues[0].personas]
    assert [t.speaker for t in dialogues[0].turns] == names * 3
    opinions = [OpinionRecord(**o) for o in lines(out / "opinions.jsonl")]
    assert opinions and all(o.culture == "Arabic" and o.seed_id in ("27", "28") for o in opinions)
    assert all(o.speaker in names for o in opinions)
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert manifest["command"] == "culturepark" and manifest["status"] == "completed"
    assert counts["dialogues_done"] == 2 and counts["lines"] == 12
    assert counts["opinions"]["kept"] == len(opinions)
    assert counts["opinions"]["extracted"] >= counts["opinions"]["verified"] >= len(opinions)
    assert manifest["verifier"] == "llm:openai:mock-judge"
    assert set(manifest["prompts"]) >= {"culturepark_turn_v1", "culturepark_verify_v1"}
    for path in out.iterdir():
        assert FAKE_KEY.encode() not in path.read_bytes(), path.name


def test_contradicted_opinions_are_rewritten_and_the_rewrite_verified(tmp_path, mock_openai):
    out = tmp_path / "run"
    assert (
        main(mock_flags(mock_openai, "--limit", "4", "--turns", "4", "--clusters", "50", "--out", str(out)))
        == 0
    )
    counts = json.loads((out / "manifest.json").read_text())["counts"]["opinions"]
    assert counts["contradicted"] > 0, "the mock voiced no contradiction: the test proves nothing"
    assert counts["rewrites_kept"] + counts["rewrites_dropped"] == counts["contradicted"]
    rewritten = [o for o in lines(out / "opinions.jsonl") if o["rewritten"]]
    assert len(rewritten) == counts["rewrites_kept"]
    assert all(o["verdict"] == "contradict" and o["original"] != o["opinion"] for o in rewritten)


def test_opinions_become_a_training_set(tmp_path, mock_openai):
    run = tmp_path / "run"
    assert main(mock_flags(mock_openai, "--limit", "2", "--turns", "2", "--out", str(run))) == 0
    dataset = tmp_path / "dataset"
    assert (
        main(["build-dataset", "--culture", "Arabic", "--culturepark", str(run), "--out", str(dataset)]) == 0
    )
    examples = lines(dataset / "train.jsonl")
    opinions = lines(run / "opinions.jsonl")
    reasons = [e for e in examples if any(o["opinion"] in e["messages"][-1]["content"] for o in opinions)]
    assert len(reasons) == len(opinions)


def test_questions_never_asked_are_skipped_and_listed(tmp_path, mock_openai, capsys):
    seeds = tmp_path / "seeds.jsonl"
    every = (ROOT / "data" / "wvs" / "seeds.jsonl").read_text().splitlines()
    seeds.write_text("\n".join(line for line in every if json.loads(line)["q_id"] in ("27", "36")) + "\n")
    out = tmp_path / "run"
    assert main(mock_flags(mock_openai, "--seeds", str(seeds), "--turns", "1", "--out", str(out))) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped_questions"] == {"Arabic": ["36"]}
    assert [d["seed_id"] for d in lines(out / "dialogues.jsonl")] == ["27"]
    assert "Arabic: no valid survey answers to Q36" in capsys.readouterr().err


def test_a_wrong_key_is_one_line_and_exit_2_before_the_run_directory(tmp_path, mock_openai, capsys):
    mock_openai.config.api_key = "sk-the-server-wants-another-key"
    out = tmp_path / "run"
    assert main(mock_flags(mock_openai, "--limit", "1", "--out", str(out))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "HTTP 401" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_flags_are_one_line(tmp_path, mock_openai, capsys):
    assert main(mock_flags(mock_openai, "--verifier", "embed:local", "--out", str(tmp_path / "a"))) == 2
    assert "--verifier: must be llm:MODEL-SPEC" in capsys.readouterr().err
    assert main(mock_flags(mock_openai, "--culture", "Atlantean", "--out", str(tmp_path / "b"))) == 2
    assert "unknown culture 'Atlantean'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_twenty_percent_faults_of_every_kind_still_finish(tmp_path, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    config = ServerConfig(
        api_key=FAKE_KEY, fault_rate=0.2, fault_kinds=FAULT_KINDS, hang_s=2.0, retry_after_s=0.05, seed=5
    )
    with MockOpenAIServer(config) as server:
        out = tmp_path / "run"
        flags = ["--limit", "3", "--turns", "2", "--timeout", "1", "--max-attempts", "10", "--out", str(out)]
        assert main(mock_flags(server, *flags)) == 0
        kinds = {r.fault for r in server.log if r.fault}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["counts"]["dialogues_done"] == 3
    assert len(kinds) >= 3, f"too few fault kinds were injected to prove anything: {kinds}"


def test_a_resume_must_keep_the_settings_that_shape_results(tmp_path, mock_openai, capsys):
    out = tmp_path / "run"
    assert main(mock_flags(mock_openai, "--limit", "1", "--turns", "1", "--out", str(out))) == 0
    assert main(["culturepark", "--resume", str(out), "--turns", "2"]) == 2
    assert "--turns 2 differs from the run's 1" in capsys.readouterr().err
    augment_run = tmp_path / "augment"
    augment_run.mkdir()
    (augment_run / "manifest.json").write_text(json.dumps({"command": "augment", "config": {}}))
    assert main(["culturepark", "--resume", str(augment_run)]) == 2
    assert "is a augment run, not a culturepark run" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_mid_dialogue_then_resumed_equals_uninterrupted(tmp_path, no_provider_env, sig):
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, latency_s=0.1)) as server:
        flags = ["--limit", "3", "--turns", "4", "--concurrency", "2"]
        whole = tmp_path / "whole"
        assert main(mock_flags(server, *flags, "--out", str(whole))) == 0
        paid = len(server.requests("/chat/completions"))
        server.log.clear()

        out = tmp_path / "killed"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "cli.py", *mock_flags(server, *flags, "--out", str(out))]
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while len(server.requests("/chat/completions")) < 5:  # a few lines into the first dialogues
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "culturepark made no progress"
            time.sleep(0.02)
        process.send_signal(sig)
        process.communicate(timeout=60)
        before = len(server.requests("/chat/completions"))

        assert main(["culturepark", "--quiet", "--resume", str(out), "--base-url", server.base_url]) == 0
        after = len(server.requests("/chat/completions"))
    assert (out / "opinions.jsonl").read_text() == (whole / "opinions.jsonl").read_text()
    assert (out / "dialogues.jsonl").read_text() == (whole / "dialogues.jsonl").read_text()
    # Every answer received before the kill was replayed from the ledger: at most the calls in
    # flight when the process died were asked twice.
    assert after <= paid + 2, (before, after, paid)


@pytest.mark.slow
def test_on_the_embedded_models(tmp_path):
    out = tmp_path / "run"
    assert main(["culturepark", "--quiet", "--limit", "2", "--turns", "2", "--out", str(out)]) == 0
    dialogues = lines(out / "dialogues.jsonl")
    assert len(dialogues) == 2 and all(
        len(d["turns"]) == 4 and all(t["text"].strip() for t in d["turns"]) for d in dialogues
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"] == "local" and manifest["verifier"] == "llm:local"
    assert manifest["counts"]["opinions"]["extracted"] > 0
