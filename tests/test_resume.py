"""Interrupted runs continue where they stopped, replay answers from the ledger, and refuse changes."""

import json
import os
import shutil

import pytest

from cli import main
from storage.run_store import lock_run_dir

pytestmark = pytest.mark.integration


def augment(server, *flags):
    return main(
        ["augment", "--quiet", "--generator", "openai:mock-model", "--base-url", server.base_url, *flags]
    )


def chat_requests(server):
    return len(server.requests("/chat/completions", status=None))


def lines(path):
    return path.read_text().splitlines()


@pytest.fixture
def finished_run(tmp_path, mock_openai):
    out = tmp_path / "full"
    assert augment(mock_openai, "--limit", "3", "--n", "3", "--out", str(out)) == 0
    return out


def interrupt_during_last_seed(run, target):
    """What a kill -9 while seed 29 was being written leaves: no progress mark, a torn sample line."""
    shutil.copytree(run, target)
    (target / ".lock").unlink()
    progress = [p for p in lines(target / "progress.jsonl") if json.loads(p)["seed_id"] != "29"]
    (target / "progress.jsonl").write_text("\n".join(progress) + "\n")
    kept = [s for s in lines(target / "samples.jsonl") if json.loads(s)["seed_id"] != "29"]
    (target / "samples.jsonl").write_text("\n".join(kept) + '\n{"seed_id": "29", "topic": "SOC')
    return target


def test_a_resumed_run_equals_the_uninterrupted_one_without_paying_twice(tmp_path, finished_run, mock_openai):
    broken = interrupt_during_last_seed(finished_run, tmp_path / "broken")
    before = chat_requests(mock_openai)
    assert augment(mock_openai, "--resume", str(broken)) == 0
    assert lines(broken / "samples.jsonl") == lines(finished_run / "samples.jsonl")
    # seed 29's graph had finished (its checkpoint says so) before the kill: nothing is asked again
    assert chat_requests(mock_openai) == before
    manifest = json.loads((broken / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    first, resumed = manifest["segments"]
    assert first["status"] == "completed" and first["llm_calls"] == before
    assert resumed["ledger"]["misses"] == 0 and resumed["llm_calls"] == 0
    assert manifest["counts"]["llm_calls"] == before  # the run's calls, all paid by the first process
    assert manifest["counts"]["seeds_done"] == 3


def test_without_checkpoints_the_ledger_still_replays_every_call(tmp_path, finished_run, mock_openai):
    broken = interrupt_during_last_seed(finished_run, tmp_path / "broken")
    for leftover in broken.glob("checkpoints.sqlite*"):
        leftover.unlink()
    before = chat_requests(mock_openai)
    assert augment(mock_openai, "--resume", str(broken)) == 0
    assert lines(broken / "samples.jsonl") == lines(finished_run / "samples.jsonl")
    assert chat_requests(mock_openai) == before
    resumed = json.loads((broken / "manifest.json").read_text())["segments"][-1]
    assert resumed["ledger"]["hits"] > 0 and resumed["ledger"]["misses"] == 0
    assert resumed["llm_calls"] == 0 and resumed["llm_calls_replayed"] == resumed["ledger"]["hits"]


def test_rerunning_with_the_same_out_continues_that_run(finished_run, mock_openai):
    before = lines(finished_run / "samples.jsonl")
    requests = chat_requests(mock_openai)
    assert augment(mock_openai, "--out", str(finished_run)) == 0
    assert lines(finished_run / "samples.jsonl") == before
    assert chat_requests(mock_openai) == requests


def test_rerunning_a_finished_run_keeps_its_record(finished_run, mock_openai):
    record = json.loads((finished_run / "manifest.json").read_text())
    assert augment(mock_openai, "--out", str(finished_run)) == 0
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["started_at"] == record["started_at"]
    assert manifest["counts"]["llm_calls"] == record["counts"]["llm_calls"] == chat_requests(mock_openai)
    assert (
        manifest["usage_by_step"]["paraphrase"]["input_tokens"]
        == (record["usage_by_step"]["paraphrase"]["input_tokens"])
    )
    assert manifest["segments"][0] == record["segments"][0]
    assert manifest["segments"][1]["llm_calls"] == 0 and manifest["segments"][1]["status"] == "completed"


def test_a_resume_that_would_change_results_is_refused(finished_run, mock_openai, capsys):
    assert augment(mock_openai, "--resume", str(finished_run), "--n", "4") == 2
    err = capsys.readouterr().err
    assert "--n 4 differs from the run's 3" in err and len(err.strip().splitlines()) == 1


def test_a_resume_may_change_how_hard_providers_are_pushed(finished_run, mock_openai):
    assert augment(mock_openai, "--resume", str(finished_run), "--concurrency", "2", "--rpm", "100") == 0


def test_a_second_process_on_the_same_run_is_refused(finished_run, mock_openai, capsys):
    holder = lock_run_dir(finished_run)
    try:
        assert augment(mock_openai, "--resume", str(finished_run)) == 2
    finally:
        holder.close()
    assert "in use by another process" in capsys.readouterr().err


def test_resuming_a_directory_without_a_run(tmp_path, capsys):
    assert main(["augment", "--quiet", "--resume", str(tmp_path)]) == 2
    assert "no manifest.json there" in capsys.readouterr().err


def scramble(path, corruption):
    """Garbage bytes over the whole file, or over its second page (the header stays valid)."""
    if corruption == "whole":
        path.write_bytes(os.urandom(path.stat().st_size))
    else:
        data = bytearray(path.read_bytes())
        assert len(data) >= 8192, "the file has no second page to damage"
        data[4096:8192] = os.urandom(4096)
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("corruption", ["whole", "page"])
@pytest.mark.parametrize("damaged", ["ledger.sqlite", "checkpoints.sqlite"])
def test_a_damaged_cache_is_set_aside_and_the_resume_goes_on(
    tmp_path, finished_run, mock_openai, capsys, damaged, corruption
):
    broken = interrupt_during_last_seed(finished_run, tmp_path / "broken")
    assert not list(broken.glob("*-wal")), "a finished run leaves no WAL file beside its databases"
    if damaged == "ledger.sqlite":  # so the resume needs the ledger: nothing tells it seed 29 ended
        (broken / "checkpoints.sqlite").unlink()
    scramble(broken / damaged, corruption)
    before = chat_requests(mock_openai)
    capsys.readouterr()

    assert augment(mock_openai, "--resume", str(broken)) == 0
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f"warning: {broken / damaged} is damaged (")
    (set_aside,) = broken.glob(f"{damaged}.damaged-*")
    assert set_aside.name in warning
    assert lines(broken / "samples.jsonl") == lines(finished_run / "samples.jsonl")
    assert json.loads((broken / "manifest.json").read_text())["status"] == "completed"
    if damaged == "ledger.sqlite":  # seed 29's answers were lost with the ledger: asked again
        assert chat_requests(mock_openai) > before
    else:  # its answers come from the ledger instead
        assert chat_requests(mock_openai) == before
