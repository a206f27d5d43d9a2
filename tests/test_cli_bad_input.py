"""Bad input gets one line naming the problem, exit code 2, and no run directory."""

import json

import pytest

from cli import main


def run_cli(capsys, *argv):
    code = main(["augment", "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--threshold", "1.5"], "--threshold"),
        (["--threshold", "-0.1"], "--threshold"),
        (["--n", "0"], "--n"),
        (["--m", "-3"], "--m"),
        (["--concurrency", "0"], "--concurrency"),
        (["--limit", "0"], "--limit"),
        (["--generator", "gpt-4o"], "unknown model spec 'gpt-4o'"),
        (["--generator", "openai:"], "unknown model spec 'openai:'"),
        (["--judge", "cosine"], "unknown judge spec 'cosine'"),
        (["--judge", "embed:nowhere:x"], "unknown judge spec"),
        (["--generator", "local:/no/such/model.gguf"], "/no/such/model.gguf does not exist"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    tmp_path, capsys, no_provider_env, flags, needle
):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "--out", str(out), *flags)
    assert code == 2
    assert needle in err
    assert len(err.splitlines()) == 1
    assert not out.exists()


def test_a_non_numeric_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["augment", "--threshold", "high"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--threshold" in err


def test_a_malformed_seed_line_is_reported_with_file_and_line(tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"q_id": "1", "q_content": "Family is important"}) + "\n{not json\n")
    code, err = run_cli(capsys, "--seeds", str(seeds), "--out", str(tmp_path / "run"))
    assert code == 2
    assert f"{seeds}:2: not valid JSON" in err


def test_a_seed_without_content_names_the_field(tmp_path, capsys):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"q_id": "7", "topic": "X"}) + "\n")
    code, err = run_cli(capsys, "--seeds", str(seeds), "--out", str(tmp_path / "run"))
    assert code == 2
    assert f"{seeds}:1: field 'q_content'" in err


def test_missing_seed_file(tmp_path, capsys):
    code, err = run_cli(capsys, "--seeds", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "does not exist" in err


def test_missing_openai_key_names_the_variable(tmp_path, capsys, no_provider_env):
    code, err = run_cli(capsys, "--generator", "openai:gpt-4o", "--out", str(tmp_path / "run"))
    assert code == 2
    assert "OPENAI_API_KEY is not set" in err
    assert not (tmp_path / "run").exists()


def test_missing_google_key_names_the_variable(tmp_path, capsys, no_provider_env):
    code, err = run_cli(capsys, "--generator", "google:gemini-2.0-flash", "--out", str(tmp_path / "run"))
    assert code == 2 and "GOOGLE_API_KEY is not set" in err


def test_an_existing_run_directory_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "samples.jsonl").write_text("precious\n")
    code, err = run_cli(capsys, "--out", str(out), "--limit", "1")
    assert code == 2 and "already holds files" in err
    assert (out / "samples.jsonl").read_text() == "precious\n"
