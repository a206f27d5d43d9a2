"""`build-dataset --out` is replaced whole, so it is never an input of the build, a run directory or
anything holding one, and `--overwrite` replaces only an earlier dataset. Through `cli.main`."""

import shutil

import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from cli import main
from tests.conftest import FAKE_KEY, mock_augment_args

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def augment_run(tmp_path_factory):
    """A real (small) augment run: samples, candidates, progress, manifest, ledger, checkpoints."""
    with pytest.MonkeyPatch.context() as env, MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        env.setenv("OPENAI_API_KEY", FAKE_KEY)
        out = tmp_path_factory.mktemp("made") / "run"
        assert main(mock_augment_args(server, "--limit", "2", "--n", "2", "--out", str(out))) == 0
    return out


@pytest.fixture
def runs(tmp_path, augment_run):
    """runs/X: a copy of the augment run of this module, for this test to (fail to) destroy."""
    shutil.copytree(augment_run, tmp_path / "runs" / "X", ignore=shutil.ignore_patterns(".lock"))
    return tmp_path / "runs"


def contents(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def build(*argv) -> int:
    return main(["build-dataset", "--culture", "Arabic", *map(str, argv)])


def one_error_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_building_over_the_run_the_samples_come_from_is_refused(runs, capsys):
    run = runs / "X"
    before = contents(run)
    assert build("--samples", run / "samples.jsonl", "--out", run, "--overwrite") == 2
    assert one_error_line(capsys) == (
        f"error: --out {run} holds the input --samples {run / 'samples.jsonl'}; choose another directory"
    )
    assert contents(run) == before


def test_a_run_directory_is_refused_even_when_it_is_not_an_input(tmp_path, runs, capsys):
    run = runs / "X"
    samples = shutil.copy(run / "samples.jsonl", tmp_path / "samples.jsonl")
    before = contents(run)
    assert build("--samples", samples, "--out", run, "--overwrite") == 2
    assert "is a run directory (it holds manifest.json); build-dataset never replaces a run" in (
        one_error_line(capsys)
    )
    assert contents(run) == before


def test_a_directory_of_runs_is_refused(tmp_path, runs, capsys):
    samples = shutil.copy(runs / "X" / "samples.jsonl", tmp_path / "samples.jsonl")
    before = contents(runs)
    assert build("--samples", samples, "--out", runs, "--overwrite") == 2
    assert "holds files that are not a dataset (no labels.jsonl)" in one_error_line(capsys)
    assert contents(runs) == before


def test_a_dataset_holding_a_run_is_not_replaced(tmp_path, runs, capsys):
    dataset = tmp_path / "dataset"
    assert build("--out", dataset) == 0
    shutil.move(runs / "X", dataset / "X")
    before = contents(dataset)
    capsys.readouterr()  # the first build's own warnings
    assert build("--out", dataset, "--overwrite") == 2
    assert f"holds the run directory {dataset / 'X'}" in one_error_line(capsys)
    assert contents(dataset) == before


def test_a_dataset_inside_the_run_leaves_the_run_intact(runs):
    run = runs / "X"
    before = contents(run)
    for again in ([], ["--overwrite"]):
        assert build("--samples", run / "samples.jsonl", "--out", run / "dataset", *again) == 0
    assert (run / "dataset" / "labels.jsonl").is_file()
    after = contents(run)
    assert {name: data for name, data in after.items() if not name.startswith("dataset/")} == before


def test_overwrite_replaces_only_an_earlier_dataset(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me\n")
    assert build("--out", folder, "--overwrite") == 2
    assert "--overwrite replaces only an earlier build" in one_error_line(capsys)
    assert (folder / "notes.txt").read_text() == "keep me\n"


def test_an_out_holding_an_answers_dir_is_refused(tmp_path, capsys):
    answers = tmp_path / "build" / "answers"
    answers.mkdir(parents=True)
    assert build("--answers-dir", answers, "--out", tmp_path / "build", "--overwrite") == 2
    assert f"holds the input --answers-dir {answers}" in one_error_line(capsys)
    assert answers.is_dir()
