"""`build-dataset` end to end on the shipped WVS answers.

Expected labels are computed here without the code under test: a csv-module count per country (below),
and literal numbers checked by hand with awk on data/wvs/countries/*.csv.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, StrictStr

from cli import main

ROOT = Path(__file__).resolve().parent.parent
COUNTRIES = ROOT / "data" / "wvs" / "countries"
SEEDS = ROOT / "data" / "wvs" / "seeds.jsonl"


def build(*argv: str | Path) -> int:
    return main(["build-dataset", *map(str, argv)])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def labels_of(out: Path) -> dict[tuple[str, str], dict]:
    return {(line["culture"], line["q_id"]): line for line in read_jsonl(out / "labels.jsonl")}


def survey_counts(country: str, q_id: str, scale: range) -> Counter[int]:
    """Valid answers of one country, counted straight from its CSV."""
    with (COUNTRIES / f"{country}.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["B_COUNTRY"].isdigit()]
    return Counter(int(row[f"Q{q_id}"]) for row in rows if int(row[f"Q{q_id}"]) in scale)


def write_samples(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [
        json.dumps(
            {
                "seed_id": seed_id,
                "topic": "T",
                "seed": "s",
                "text": text,
                "stage": "paraphrase",
                "similarity": 0.9,
                "option": "o",
                "generator": "g",
                "judge": "j",
            }
        )
        for seed_id, text in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_cultures(path: Path, cultures: dict[str, list[str]]) -> Path:
    path.write_text(json.dumps(cultures), encoding="utf-8")
    return path


# The chat fine-tuning schema: one object per line with only `messages`, each message only role and
# content, content a non-empty string, roles system -> user -> assistant.
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ChatLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage]


def check_openai_line(line: str) -> ChatLine:
    chat = ChatLine.model_validate_json(line)
    assert [m.role for m in chat.messages] == ["system", "user", "assistant"]
    assert all(m.content.strip() for m in chat.messages)
    return chat


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    # Out of order, with a repeat and a copy of the seed, as an async augment run may write them.
    return write_samples(
        tmp_path / "samples.jsonl",
        [
            ("29", "Men are better political leaders than women, on the whole."),
            ("27", "Making my parents proud has been one of my main life goals."),
            ("36", "Same-sex couples make parents as good as other couples do."),
            ("27", "A main goal of my life has been making my parents proud."),
            ("27", "Making my parents proud has been one of my main life goals."),
            ("29", "On the whole, men make better political leaders than women do"),
        ],
    )


def test_arabic_openai_set_from_seeds_and_samples(tmp_path, samples, capsys):
    out = tmp_path / "arabic"
    assert build("--culture", "arabic", "--samples", samples, "--format", "openai", "--out", out) == 0

    lines = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    chats = [check_openai_line(line) for line in lines]
    # 50 seeds, minus Q36 and Q226 (asked in neither Iraq nor Jordan), plus 3 distinct samples of
    # labelled seeds (a repeat and a copy of the seed are dropped, the Q36 sample is skipped).
    assert len(chats) == 48 + 3
    assert not (out / "validation.jsonl").exists()
    assert chats[0].messages[0].content == "You are an Arabic chatbot that knows Arabic culture very well."
    assert (
        chats[0]
        .messages[1]
        .content.startswith("Statement: One of my main goals in life has been to make my parents proud\n")
    )
    # The seed comes first, then its samples in sorted order, whatever order the run wrote them in.
    assert [c.messages[1].content.splitlines()[0] for c in chats[:3]] == [
        "Statement: One of my main goals in life has been to make my parents proud",
        "Statement: A main goal of my life has been making my parents proud.",
        "Statement: Making my parents proud has been one of my main life goals.",
    ]
    assert chats[0].messages[2].content == chats[1].messages[2].content == chats[2].messages[2].content
    assert not any("Same-sex couples" in c.messages[1].content for c in chats)

    err = capsys.readouterr().err
    assert "warning: Arabic: no valid answers to Q36, Q226; skipped 2 seed and 1 augmented examples" in err

    card = (out / "README.md").read_text(encoding="utf-8")
    for fact in [
        "Arabic",
        "IRQ, JOR",
        "| train | 51 |",
        "Method `mode`",
        str(samples.name),
        "doi:10.14281/18241.20",
        "Q36, Q226 (2 seed, 1 augmented examples)",
    ]:
        assert fact in card
    # Nothing but the dataset is left beside --out.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arabic", "samples.jsonl"]


def test_q36_in_iraq_has_no_label_where_the_old_code_produced_4(tmp_path):
    cultures = write_cultures(tmp_path / "c.json", {"Iraq": ["IRQ"]})
    assert (
        build("--culture", "Iraq", "--cultures-file", cultures, "--label", "mean", "--out", tmp_path / "o")
        == 0
    )
    line = labels_of(tmp_path / "o")[("Iraq", "36")]
    assert line == {
        "culture": "Iraq",
        "q_id": "36",
        "label": None,
        "distribution": {},
        "n_valid": 0,
        "countries": [],
        "n_valid_by_country": {"IRQ": 0},
        "method": "mean",
    }


def test_hand_checked_single_country_labels(tmp_path):
    cultures = write_cultures(
        tmp_path / "c.json", {"USA": ["USA"], "DEU": ["DEU"], "KOR": ["KOR"], "Iraq": ["IRQ"]}
    )
    for method in ("mode", "mean"):
        assert (
            build(
                "--culture", "all", "--cultures-file", cultures, "--label", method, "--out", tmp_path / method
            )
            == 0
        )
    mode, mean = labels_of(tmp_path / "mode"), labels_of(tmp_path / "mean")

    # USA Q27 (awk): 1:770 2:1296 3:447 4:73, and 10 answers of -2 left out.
    usa = mode[("USA", "27")]
    assert (usa["n_valid"], usa["label"]) == (2586, 2)
    assert usa["distribution"] == {"1": 0.2978, "2": 0.5012, "3": 0.1729, "4": 0.0282}
    assert mean[("USA", "27")]["label"] == 2  # 4995 / 2586 = 1.93

    # DEU Q31, the duplicated "4." scale (awk): 1:14 2:126 3:647 4:698; code 3 is "Disagree".
    assert mode[("DEU", "31")]["n_valid"] == 1485
    assert mode[("DEU", "31")]["label"] == 4
    assert mean[("DEU", "31")]["label"] == 3  # 4999 / 1485 = 3.37

    # KOR Q158, a 1..10 scale named at its ends: every point from 1 to 10 is an answer.
    assert mode[("KOR", "158")]["n_valid"] == 1245
    assert mode[("KOR", "158")]["label"] == 7  # 438 answers
    assert mean[("KOR", "158")]["label"] == 7  # 8869 / 1245 = 7.12

    # IRQ Q122, a 0..2 scale (awk): 0:574 1:403 2:172; 0 is a real answer and the mode.
    assert (mode[("Iraq", "122")]["label"], mode[("Iraq", "122")]["n_valid"]) == (0, 1149)
    assert mean[("Iraq", "122")]["label"] == 1  # 747 / 1149 = 0.65


def test_spanish_weighs_argentina_and_mexico_equally(tmp_path):
    assert build("--culture", "Spanish", "--label", "mean", "--out", tmp_path / "es") == 0
    labels = labels_of(tmp_path / "es")
    for q_id in ("29", "33", "158"):
        scale = range(1, 11) if q_id == "158" else range(1, 6)
        argentina, mexico = survey_counts("ARG", q_id, scale), survey_counts("MEX", q_id, scale)
        shares = {
            code: Fraction(argentina[code], argentina.total()) / 2
            + Fraction(mexico[code], mexico.total()) / 2
            for code in scale
        }
        mean = sum(code * share for code, share in shares.items())
        line = labels[("Spanish", q_id)]
        assert line["countries"] == ["ARG", "MEX"]
        assert line["n_valid"] == argentina.total() + mexico.total()
        assert line["n_valid_by_country"] == {"ARG": argentina.total(), "MEX": mexico.total()}
        for code, share in shares.items():
            if str(code) in line["distribution"]:
                assert line["distribution"][str(code)] == pytest.approx(float(share), abs=5e-5)
        assert line["label"] == int(mean + Fraction(1, 2))
    # Q29 by hand (awk): ARG 1:37 2:159 3:398 4:365, MEX 1:133 2:291 3:804 4:502; shares of 3 are
    # 0.4150 and 0.4647, so 0.4399 weighted equally (0.4470 pooled); mean 3.05.
    assert labels[("Spanish", "29")]["distribution"]["3"] == 0.4399
    assert labels[("Spanish", "29")]["label"] == 3


def test_culturellm_one_has_every_culture_with_its_own_system_prompt(tmp_path):
    assert build("--culture", "all", "--format", "sharegpt", "--out", tmp_path / "one") == 0
    rows = read_jsonl(tmp_path / "one" / "train.jsonl")
    systems = list(dict.fromkeys(row["conversations"][0]["value"] for row in rows))
    cultures = [
        "Arabic",
        "Bengali",
        "Chinese",
        "English",
        "German",
        "Greek",
        "Korean",
        "Portuguese",
        "Spanish",
        "Turkish",
    ]
    assert [s.split(" chatbot")[0].split()[-1] for s in systems] == cultures
    assert all([turn["from"] for turn in row["conversations"]] == ["system", "human", "gpt"] for row in rows)
    labels = read_jsonl(tmp_path / "one" / "labels.jsonl")
    assert len(labels) == 10 * 50
    assert len(rows) == sum(line["label"] is not None for line in labels)


def test_alpaca_rows_carry_instruction_output_and_system(tmp_path):
    assert build("--culture", "Korean", "--format", "alpaca", "--out", tmp_path / "ko") == 0
    row = read_jsonl(tmp_path / "ko" / "train.jsonl")[0]
    assert set(row) == {"instruction", "input", "output", "system"}
    assert row["system"] == "You are a Korean chatbot that knows Korean culture very well."
    assert row["instruction"].startswith("Statement: One of my main goals")
    assert row["output"] in {"1", "2", "3", "4"}


def test_the_validation_split_holds_out_whole_questions_stably(tmp_path, samples):
    for name in ("a", "b"):
        assert (
            build(
                "--culture", "German", "--samples", samples, "--val-fraction", "0.2", "--out", tmp_path / name
            )
            == 0
        )
    train = (tmp_path / "a" / "train.jsonl").read_text(encoding="utf-8")
    validation = (tmp_path / "a" / "validation.jsonl").read_text(encoding="utf-8")
    assert train == (tmp_path / "b" / "train.jsonl").read_text(encoding="utf-8")
    assert validation == (tmp_path / "b" / "validation.jsonl").read_text(encoding="utf-8")

    def questions(text: str) -> set[str]:
        return {json.loads(line)["messages"][1]["content"].split("\n")[0] for line in text.splitlines()}

    assert len(validation.splitlines()) >= 10
    assert len(train.splitlines()) + len(validation.splitlines()) == 50 + 4
    assert not questions(train) & questions(validation)
    assert "| validation |" in (tmp_path / "a" / "README.md").read_text(encoding="utf-8")


def test_hf_dataset_round_trips_through_load_from_disk(tmp_path, samples):
    from datasets import load_from_disk

    out = tmp_path / "hf"
    assert (
        build(
            "--culture",
            "Spanish",
            "--samples",
            samples,
            "--format",
            "hf",
            "--val-fraction",
            "0.1",
            "--out",
            out,
        )
        == 0
    )
    loaded = load_from_disk(str(out))
    assert sorted(loaded) == ["train", "validation"]
    assert loaded["train"].num_rows + loaded["validation"].num_rows == 50 + 4
    first = loaded["train"][0]
    assert first["culture"] == "Spanish" and first["source"] == "seed"
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][2]["content"] == str(first["label"])
    labels = labels_of(out)
    assert all(row["label"] == labels[("Spanish", row["q_id"])]["label"] for row in loaded["train"])
    assert (out / "README.md").is_file() and (out / "labels.jsonl").is_file()


def test_a_users_culture_and_country_files_extend_the_shipped_ones(tmp_path):
    answers = tmp_path / "answers"
    answers.mkdir()
    header = (COUNTRIES / "USA.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    rows = [",".join(["250", "FRA", *(["2"] * (len(header) - 2))])] * 3
    (answers / "FRA.csv").write_text("\n".join([",".join(header), *rows]) + "\n", encoding="utf-8")
    cultures = write_cultures(tmp_path / "c.json", {"French": ["FRA"], "Arabic": ["JOR"]})
    assert (
        build(
            "--culture",
            "French",
            "--cultures-file",
            cultures,
            "--answers-dir",
            answers,
            "--out",
            tmp_path / "fr",
        )
        == 0
    )
    labels = labels_of(tmp_path / "fr")
    assert labels[("French", "27")]["label"] == 2 and labels[("French", "27")]["n_valid"] == 3
    # A culture of the same name replaces the shipped one.
    assert build("--culture", "Arabic", "--cultures-file", cultures, "--out", tmp_path / "ar") == 0
    assert labels_of(tmp_path / "ar")[("Arabic", "27")]["countries"] == ["JOR"]


def test_an_existing_dataset_is_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert build("--culture", "Greek", "--out", out) == 0
    before = (out / "train.jsonl").read_text(encoding="utf-8")
    assert build("--culture", "Turkish", "--out", out) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (out / "train.jsonl").read_text(encoding="utf-8") == before
    assert build("--culture", "Turkish", "--overwrite", "--out", out) == 0
    assert "Turkish" in (out / "train.jsonl").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def error_of(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


def assert_nothing_written(tmp_path: Path, *keep: str) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_an_unknown_culture_lists_the_known_ones(tmp_path, capsys):
    assert build("--culture", "Klingon", "--out", tmp_path / "out") == 2
    assert error_of(capsys) == (
        "error: unknown culture 'Klingon'; known cultures: Arabic, Bengali, Chinese, English, German, Greek, "
        "Korean, Portuguese, Spanish, Turkish (or 'all')"
    )
    assert_nothing_written(tmp_path)


def test_samples_of_seeds_outside_the_seed_set_are_refused(tmp_path, capsys):
    samples = write_samples(tmp_path / "s.jsonl", [("27", "fine"), ("999", "who?"), ("Q1000", "me?")])
    assert build("--culture", "Arabic", "--samples", samples, "--out", tmp_path / "out") == 2
    message = error_of(capsys)
    assert "seed_id '999' (line 2), '1000' (line 3) not in the seed set" in message
    assert_nothing_written(tmp_path, "s.jsonl")


def test_an_answers_file_with_missing_columns_is_refused(tmp_path, capsys):
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "IRQ.csv").write_text("B_COUNTRY,B_COUNTRY_ALPHA,Q27\n368,IRQ,1\n", encoding="utf-8")
    assert build("--culture", "Arabic", "--answers-dir", answers, "--out", tmp_path / "out") == 2
    assert "IRQ.csv: missing columns Q28, Q29, Q30" in error_of(capsys)
    assert_nothing_written(tmp_path, "answers")


def test_a_culture_without_any_valid_answer_is_an_empty_result(tmp_path, capsys):
    answers = tmp_path / "answers"
    answers.mkdir()
    header = (COUNTRIES / "USA.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    (answers / "NUL.csv").write_text(
        "\n".join([",".join(header), ",".join(["1", "NUL", *(["-4"] * (len(header) - 2))])]) + "\n",
        encoding="utf-8",
    )
    cultures = write_cultures(tmp_path / "c.json", {"Nobody": ["NUL"]})
    assert (
        build(
            "--culture",
            "Nobody",
            "--cultures-file",
            cultures,
            "--answers-dir",
            answers,
            "--out",
            tmp_path / "out",
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: no examples to write: no question has a valid answer for Nobody"
    assert_nothing_written(tmp_path, "answers", "c.json")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--val-fraction", "1"], "error: --val-fraction: Input should be less than 1"),
        (["--translate", "German"], "error: --translate needs --translate-model SPEC"),
        (["--seeds", "missing.jsonl"], "error: seed file missing.jsonl does not exist"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    assert build("--culture", "Greek", *argv, "--out", tmp_path / "out") == 2
    assert error_of(capsys) == message
    assert_nothing_written(tmp_path)


def test_the_default_seed_file_is_the_shipped_one():
    assert SEEDS.is_file()
    from builders.build import BuildSettings

    assert BuildSettings(culture="Greek", out=Path("x")).seeds == SEEDS


def test_samples_in_the_culturellm_authors_layout_are_read_too(tmp_path):
    rows = [
        {
            "q_id": "27",
            "q_content": "A key goal in my life has been to bring pride to my parents.",
            "option": "o",
        },
        {
            "q_id": "27",
            "q_content": "Making my parents proud has always been a main aim of mine.",
            "option": "o",
        },
    ]
    samples = tmp_path / "reference.jsonl"
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert build("--culture", "Turkish", "--samples", samples, "--out", tmp_path / "tr") == 0
    train = read_jsonl(tmp_path / "tr" / "train.jsonl")
    assert len(train) == 50 + 2
    assert train[1]["messages"][1]["content"].startswith("Statement: A key goal in my life has been")


def test_a_malformed_samples_line_is_named(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"seed_id": "27", "text": "ok"}\n{"seed_id": "28"\n', encoding="utf-8")
    assert build("--culture", "Turkish", "--samples", samples, "--out", tmp_path / "tr") == 2
    assert error_of(capsys).startswith(f"error: {samples}:2: not valid JSON")
    samples.write_text('{"seed_id": "27", "text": "  "}\n', encoding="utf-8")
    assert build("--culture", "Turkish", "--samples", samples, "--out", tmp_path / "tr") == 2
    assert error_of(capsys) == f"error: {samples}:1: field 'text': value error, must not be empty"
    assert_nothing_written(tmp_path, "s.jsonl")


def test_an_out_path_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "out").write_text("mine", encoding="utf-8")
    assert build("--culture", "Greek", "--out", tmp_path / "out") == 2
    assert error_of(capsys) == f"error: --out {tmp_path / 'out'} is a file, not a directory"
    assert (tmp_path / "out").read_text(encoding="utf-8") == "mine"
