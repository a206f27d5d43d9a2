"""Bad input gets one line naming the problem, exit code 2, and no run directory."""

import json
import os
import subprocess

import pytest

from cli import main
from tests.conftest import mock_augment_args


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


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--rpm", "inf"], "--rpm: input should be a finite number (got inf)"),
        (["--rpm", "nan"], "--rpm: input should be a finite number (got nan)"),
        (["--rpm", "1e-300"], "--rpm: input should be greater than or equal to 1"),
        (["--tpm", "inf"], "--tpm: input should be a finite number"),
        (["--timeout", "inf"], "--timeout: input should be a finite number (got inf)"),
        (["--timeout=-inf"], "--timeout: input should be a finite number"),
        (["--timeout", "nan"], "--timeout: input should be a finite number"),
        (["--temperature", "nan"], "--temperature: input should be a finite number"),
        (["--threshold", "inf"], "--threshold: input should be a finite number"),
    ],
)
def test_non_finite_numbers_are_refused_in_one_line(tmp_path, capsys, no_provider_env, flags, needle):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "--out", str(out), *flags)
    assert code == 2
    assert err.startswith(f"error: {needle}") and len(err.splitlines()) == 1
    assert not out.exists()


def write_resumable_run(run):
    """The manifest of an interrupted run: enough for `--resume` to read its settings."""
    run.mkdir()
    config = {"generator": "openai:mock-model", "limit": 1}
    (run / "manifest.json").write_text(
        json.dumps({"command": "augment", "status": "interrupted", "config": config})
    )
    return run


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--rpm", "inf"], "--rpm: input should be a finite number (got inf)"),
        (["--timeout", "nan"], "--timeout: input should be a finite number"),
        (["--concurrency", "0"], "--concurrency: input should be greater than 0"),
    ],
)
def test_flags_given_to_a_resume_get_the_same_checks(tmp_path, capsys, no_provider_env, flags, needle):
    run = write_resumable_run(tmp_path / "run")
    code, err = run_cli(capsys, "--resume", str(run), *flags)
    assert code == 2 and needle in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json"]


def test_resuming_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "samples.jsonl"
    a_file.write_text("{}\n")
    code, err = run_cli(capsys, "--resume", str(a_file))
    assert code == 2 and err == f"error: --resume {a_file} is a file, not a run directory"
    code, err = run_cli(capsys, "--resume", str(tmp_path / "gone"))
    assert code == 2 and err == f"error: --resume {tmp_path / 'gone'} does not exist"


def test_rejudging_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "manifest.json"
    a_file.write_text("{}\n")
    assert main(["rejudge", str(a_file)]) == 2
    assert capsys.readouterr().err.strip() == f"error: rejudge: {a_file} is a file, not a run directory"


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be created in, even by root (who ignores permission bits): the
    immutable attribute where the file system has it, else skip."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("running as root on a file system without chattr +i: cannot make a read-only dir")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


@pytest.mark.integration
def test_an_unwritable_out_is_one_line_before_any_seed_runs(read_only_dir, mock_openai, capsys):
    for out in (read_only_dir / "run", read_only_dir):  # to be created in it, or the (empty) dir itself
        assert main(mock_augment_args(mock_openai, "--limit", "1", "--out", str(out))) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out) in err, err
        assert "cannot create the run directory" in err or "is not writable" in err
    assert not mock_openai.requests("/chat/completions", status=None)
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.integration
def test_an_out_below_a_file_is_one_line(tmp_path, mock_openai, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    assert main(mock_augment_args(mock_openai, "--limit", "1", "--out", str(a_file / "run"))) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {a_file / 'run'}: cannot create the run directory (Not a directory)"
    assert a_file.read_text() == "mine\n"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("localhost:8000/v1", "--base-url localhost:8000/v1: not a server URL (it must start with http://"),
        ("ftp://127.0.0.1/v1", "--base-url ftp://127.0.0.1/v1: not a server URL (it must start with http://"),
        ("http://", "--base-url http://: not a server URL (it names no host)"),
        (
            "http://127.0.0.1:99999/v1",
            "--base-url http://127.0.0.1:99999/v1: not a server URL (port out of range",
        ),
        ("http://127.0.0.1:port/v1", "--base-url http://127.0.0.1:port/v1: not a server URL (port could not"),
        ("http://me:secret@127.0.0.1:0x1/v1", "--base-url http://***@127.0.0.1:0x1/v1: not a server URL"),
        ("me:secret@127.0.0.1/v1", "--base-url ***@127.0.0.1/v1: not a server URL"),
    ],
)
def test_a_malformed_base_url_is_one_line(tmp_path, capsys, no_provider_env, url, needle):
    no_provider_env.setenv("OPENAI_API_KEY", "sk-test")
    out = tmp_path / "run"
    code, err = run_cli(capsys, "--generator", "openai:m", "--base-url", url, "--out", str(out))
    assert code == 2 and len(err.splitlines()) == 1
    assert err.lower().startswith(f"error: {needle}".lower())
    assert "secret" not in err
    assert not out.exists()


def test_a_malformed_base_url_in_the_environment_names_the_variable(tmp_path, capsys, no_provider_env):
    no_provider_env.setenv("OPENAI_API_KEY", "sk-test")
    no_provider_env.setenv("OPENAI_BASE_URL", "127.0.0.1:8000")
    code, err = run_cli(capsys, "--generator", "openai:m", "--out", str(tmp_path / "run"))
    assert code == 2
    assert err.startswith("error: OPENAI_BASE_URL 127.0.0.1:8000: not a server URL")
