"""`evaluate --suite wvs|hofstede` against the loopback OpenAI-compatible server: models answer the WVS
seed questions and the VSM 2013 items as a culture's people; the scores are recomputed here from
answers.jsonl with the metric functions, so the report is what the answers say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main
from evals import alignment, hofstede
from storage.seeds import DEFAULT_SEEDS, load_seeds

pytestmark = pytest.mark.integration


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(server, out: Path, *flags: str) -> int:
    return main(["evaluate", "--quiet", "--base-url", server.base_url, *flags, "--out", str(out)])


@pytest.fixture
def questions_file(tmp_path) -> Path:
    # Q36 is one of the two questions Arabic's countries never asked.
    path = tmp_path / "questions.txt"
    path.write_text("Q27\nQ36\n# a comment\nQ40\n158\n", encoding="utf-8")
    return path


def test_wvs_samples_are_scored_against_the_survey_and_the_weakest_become_seeds(
    tmp_path, mock_openai, questions_file
):
    out = tmp_path / "wvs"
    flags = [
        "--suite",
        "wvs",
        "--model",
        "openai:mock-a",
        "--culture",
        "Arabic",
        "--questions",
        str(questions_file),
    ]
    sampled = ["--distribution", "samples", "--samples", "4", "--temperature", "1"]
    assert evaluate(mock_openai, out, *flags, *sampled, "--weak", "2") == 0

    answers = lines(out / "answers.jsonl")
    assert sorted({a["question"] for a in answers}) == ["158", "27", "40"]  # Q36 never asked: skipped
    assert len(answers) == 3 * 4
    # The K draws are distinct requests (each its own seed), not one answer replayed by the ledger.
    seeds = {r.body.get("seed") for r in mock_openai.requests()}
    assert len(seeds) >= 4

    results = json.loads((out / "results.json").read_text())
    arabic = results["models"][0]["cultures"][0]
    assert arabic["culture"] == "Arabic" and arabic["skipped"] == ["36"]
    survey = {
        q.q_id: q
        for q in alignment.load_culture_questions("Arabic", load_seeds(DEFAULT_SEEDS))["Arabic"].scorable
    }
    for row in arabic["questions"]:  # each score is the metric of the parsed samples' shares
        question = survey[row["q_id"]]
        codes = [a["code"] for a in answers if a["question"] == row["q_id"]]
        shares, invalid = alignment.distribution_from_samples(codes, question.scale)
        assert row["invalid"] == invalid
        assert row["js_divergence"] == pytest.approx(
            alignment.js_divergence(shares, question.distribution), abs=1e-4
        )
        assert row["mode_match"] == (alignment.score_question(question, shares).model_mode == question.mode)
    weak = load_seeds(out / "weak_questions" / "Arabic.jsonl")  # a seed file augment --seeds reads
    assert len(weak) == 2
    worst = max(arabic["questions"], key=lambda r: r["js_divergence"])
    assert weak[0].q_id == worst["q_id"]
    assert "Never asked" in (out / "report.md").read_text() and (out / "wvs_alignment.png").stat().st_size > 0


def test_wvs_on_the_questions_a_build_held_out(tmp_path, mock_openai):
    dataset = tmp_path / "dataset"
    assert main(["build-dataset", "--culture", "German", "--val-fraction", "0.2", "--out", str(dataset)]) == 0
    held_out = {s.q_id for s in alignment.read_validation_questions(dataset, load_seeds(DEFAULT_SEEDS))}
    out = tmp_path / "wvs"
    assert evaluate(mock_openai, out, "--suite", "wvs", "--model", "openai:mock-a", "--culture", "German",
                    "--split", "validation", str(dataset)) == 0  # fmt: skip
    asked = {a["question"] for a in lines(out / "answers.jsonl")}
    assert asked == held_out and 0 < len(asked) < 50


def test_hofstede_indices_are_the_manuals_formulas_over_the_parsed_answers(tmp_path, mock_openai):
    out = tmp_path / "hofstede"
    flags = ["--suite", "hofstede", "--model", "openai:mock-a", "--model", "openai:mock-b"]
    assert (
        evaluate(
            mock_openai,
            out,
            *flags,
            "--culture",
            "Spanish,Arabic",
            *["--distribution", "samples", "--samples", "3", "--temperature", "1"],
        )
        == 0
    )

    answers = lines(out / "answers.jsonl")
    assert len(answers) == 2 * 2 * 24 * 3  # models x cultures x items x samples
    results = json.loads((out / "results.json").read_text())
    scores = hofstede.load_country_scores()
    culture_map = hofstede.load_culture_countries(scores=scores)
    for model in results["models"]:
        for row in model["cultures"]:
            mine = [a for a in answers if a["column"] == model["column"] and a["culture"] == row["culture"]]
            by_item = {
                item: [a["code"] for a in mine if a["question"] == f"vsm{item:02d}"] for item in range(1, 25)
            }
            summary = hofstede.item_means_from_answers(by_item)
            indices = hofstede.partial_vsm_indices(summary.means)
            reference = hofstede.reference_scores(row["culture"], scores, culture_map)
            for dimension, value in indices.items():
                assert row["indices"][dimension] == (
                    None if value is None else pytest.approx(value, abs=0.01)
                )
            assert row["reference"] == pytest.approx(reference, abs=0.01)
            comparison = hofstede.compare(indices, reference)
            assert row["rms"] == pytest.approx(comparison.rms, abs=0.01)
            assert row["unparsable"] == sum(summary.unparsable.values())
    spanish = results["models"][0]["cultures"][0]
    assert spanish["culture"] == "Spanish" and spanish["countries"] == ["ARG", "MEX"]
    report = (out / "report.md").read_text()
    assert "| Spanish | survey (ARG, MEX) |" in report and (out / "hofstede_dimensions.png").is_file()


def test_a_resumed_survey_run_asks_nothing_again(tmp_path, mock_openai):
    out = tmp_path / "hofstede"
    assert (
        evaluate(mock_openai, out, "--suite", "hofstede", "--model", "openai:mock-a", "--culture", "German")
        == 0
    )
    asked = len(mock_openai.requests())
    assert main(["evaluate", "--quiet", "--resume", str(out)]) == 0
    assert len(mock_openai.requests()) == asked
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["suite"] == "hofstede" and len(manifest["segments"]) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--suite", "wvs", "--culture", "Atlantis"], "unknown culture 'Atlantis'"),
        (["--suite", "hofstede", "--culture", "Atlantis"], "--culture Atlantis: unknown culture"),
        (
            ["--suite", "wvs", "--model", "google:gemini-2.0-flash", "--distribution", "probabilities"],
            "--model google:gemini-2.0-flash gives no option probabilities",
        ),
        (["--suite", "wvs", "--split", "test", "x"], "only the validation split"),
        (["--suite", "hofstede", "--export-lm-eval", "x"], "--export-lm-eval exports the downstream tasks"),
    ],
)
def test_bad_survey_flags_are_one_line_and_write_nothing(
    tmp_path, mock_openai, capsys, monkeypatch, flags, message
):
    monkeypatch.setenv("GOOGLE_API_KEY", "not-a-real-key")  # never sent: the run is refused first
    out = tmp_path / "run"
    assert evaluate(mock_openai, out, "--model", "openai:mock-a", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert not out.exists()


def test_an_unknown_suite_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--suite", "quiz", "--out", str(tmp_path / "run")])
    assert exited.value.code == 2
    assert "invalid choice: 'quiz'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_broken_questions_file_names_its_line(tmp_path, mock_openai, capsys):
    bad = tmp_path / "questions.txt"
    bad.write_text("Q27\nQ9999\n", encoding="utf-8")
    assert evaluate(mock_openai, tmp_path / "run", "--suite", "wvs", "--questions", str(bad)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "2" in err


@pytest.mark.slow
def test_option_probabilities_of_hf_local_are_one_distribution_per_question(tmp_path, questions_file):
    out = tmp_path / "wvs"
    flags = [
        "--suite",
        "wvs",
        "--model",
        "hf:local",
        "--culture",
        "Arabic",
        "--questions",
        str(questions_file),
    ]
    assert main(["evaluate", "--quiet", *flags, "--distribution", "probabilities", "--out", str(out)]) == 0
    answers = lines(out / "answers.jsonl")
    assert len(answers) == 3 and all(a["sample"] == -1 for a in answers)  # one reading per question
    for answer in answers:
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0)
        top = max(sorted(answer["probabilities"], key=int), key=lambda c: answer["probabilities"][c])
        assert answer["code"] == int(top)
    results = json.loads((out / "results.json").read_text())
    assert results["models"][0]["cultures"][0]["scored"] == 3


def test_an_answer_naming_no_option_is_asked_again_before_it_counts_as_unparsable(tmp_path, mock_openai):
    from bench.mock_openai_server import SURVEY_UNPARSABLE, survey_answer

    out = tmp_path / "hofstede"
    flags = ["--suite", "hofstede", "--model", "openai:mock-a", "--culture", "German,Arabic"]
    sampled = ["--distribution", "samples", "--samples", "4", "--temperature", "1"]
    assert evaluate(mock_openai, out, *flags, *sampled) == 0

    answers = lines(out / "answers.jsonl")
    rambling = [  # the server's answers are a pure function of the question, the model and the seed
        r
        for r in mock_openai.requests()
        if survey_answer(r.body["messages"][-1]["content"], r.body["model"], r.body.get("seed"))
        == SURVEY_UNPARSABLE
    ]
    assert rambling, "the server never rambled: this run cannot show a retry"
    # Every rambling answer was followed by another draw, so no sample stayed unparsable (three
    # rambles in a row for one sample are a 1-in-8000 chance per sample at the server's 5 %).
    assert len(mock_openai.requests()) == len(answers) + len(rambling)
    assert all(a["code"] is not None for a in answers)
    results = json.loads((out / "results.json").read_text())
    assert all(row["unparsable"] == 0 for row in results["models"][0]["cultures"])


def test_by_default_an_openai_model_answers_through_the_logprobs_of_its_first_token(tmp_path, mock_openai):
    out = tmp_path / "wvs"
    assert (
        evaluate(mock_openai, out, "--suite", "wvs", "--model", "openai:mock-a", "--culture", "German") == 0
    )

    answers = lines(out / "answers.jsonl")
    requests = mock_openai.requests()
    assert len(answers) == len(requests) and all(a["sample"] == -1 for a in answers)  # one reading each
    assert all(r.body.get("logprobs") is True and r.body.get("top_logprobs") == 20 for r in requests)
    for answer in answers:
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        top = max(sorted(answer["probabilities"], key=int), key=lambda c: answer["probabilities"][c])
        assert answer["code"] == int(top)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
