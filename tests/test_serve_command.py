"""`python cli.py serve` refuses bad flags and a damaged job table in one line, before it listens."""

from __future__ import annotations

import pytest

from cli import main
from commands.serve import parse_limits


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--limit", "azure:rpm=10"],
            "--limit azure:rpm=10: expected PROVIDER:KEY=VALUE,... with PROVIDER one of openai, google",
        ),
        (["--limit", "openai:rpm=fast"], "--limit openai:rpm=fast: rpm='fast' is not a number"),
        (
            ["--limit", "openai:burst=3"],
            "--limit openai:burst=3: 'burst=3' is not one of rpm=N, tpm=N, concurrency=N, timeout=N",
        ),
        (["--limit", "openai:rpm=0"], "--limit openai:rpm=0: rpm must be above 0"),
        (["--limit", "openai:"], "--limit openai:: no limit given"),
        (
            ["--limit", "openai:rpm=5", "--limit", "openai:tpm=9"],
            "--limit openai:tpm=9: openai is limited twice",
        ),
        (["--max-jobs", "0"], "--max-jobs 0: must be at least 1"),
        (["--port", "70000"], "--port 70000: not a port number"),
        (["--host", "10.1.2.3"], "--host 10.1.2.3: another interface than loopback needs a token"),
    ],
)
def test_bad_flags_are_one_line_and_make_nothing(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.delenv("CULTURE_FORGE_TOKEN", raising=False)
    runs = tmp_path / "runs"
    assert main(["serve", "--runs-dir", str(runs), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not runs.exists()


def test_a_damaged_job_table_is_named_and_left_as_it_was(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    table = runs / "jobs.sqlite"
    table.write_bytes(b"not a database, but someone's file" * 100)
    before = table.read_bytes()
    assert main(["serve", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: --runs-dir {runs}: job table {table}: cannot be opened")
        and err.count("\n") == 1
    )
    assert table.read_bytes() == before


def test_limits_become_one_call_limits_per_provider():
    limits = parse_limits(["openai:rpm=3000,tpm=400000,concurrency=64", "google:rpm=60,timeout=30"])
    assert (limits["openai"].rpm, limits["openai"].tpm, limits["openai"].concurrency) == (3000, 400000, 64)
    assert (limits["google"].rpm, limits["google"].timeout_s) == (60, 30)
