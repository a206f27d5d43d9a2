"""`build-dataset --culturepark DIR`: a CulturePark run's verified opinions as training examples.

Each opinion asks its seed's own WVS prompt and is answered with the culture's label (as this build
computes it), then the opinion as the reason. Run directories are made by hand here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main
from tests.test_build_dataset_command import check_openai_line, labels_of, read_jsonl, write_samples


def build(*argv: str | Path) -> int:
    return main(["build-dataset", *map(str, argv)])


def opinion(culture: str, seed_id: str, text: str, label: int, **overrides: object) -> dict:
    return {
        "culture": culture,
        "seed_id": seed_id,
        "seed": "s",
        "option": "o",
        "label": label,
        "attitude": "a",
        "opinion": text,
        "speaker": "Amina",
        "verdict": "entail",
        "rewritten": False,
        "original": None,
        "cluster": 0,
        "generator": "g",
        "verifier": "v",
        **overrides,
    }


def write_run(
    folder: Path, opinions: list[dict], *, status: str = "completed", command: str = "culturepark"
) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"command": command, "status": status, "config": {}}))
    (folder / "opinions.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in opinions), encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="module")
def arabic_labels(tmp_path_factory) -> dict[str, int | None]:
    """This build's Arabic labels, from a seed-only build."""
    out = tmp_path_factory.mktemp("labels") / "arabic"
    assert build("--culture", "Arabic", "--out", out) == 0
    return {q_id: line["label"] for (_, q_id), line in labels_of(out).items()}


def one_error(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_each_opinion_answers_its_seed_with_the_label_and_the_opinion_as_reason(
    tmp_path, arabic_labels, capsys
):
    q27, q29 = arabic_labels["27"], arabic_labels["29"]
    run = write_run(
        tmp_path / "park",
        [
            opinion("Arabic", "27", "I work hard so that my parents can be proud of me.", q27),
            opinion("German", "27", "I decide my goals for myself.", 2),  # not a culture of this build
            opinion("Arabic", "29", "I think men are better suited to lead a country.", q29),
            opinion("Arabic", "27", "I believe honouring my family is my first duty.", q27),
            opinion(
                "Arabic", "27", "  i work hard so that my parents can be   proud of me.", q27
            ),  # a repeat
        ],
    )
    samples = write_samples(
        tmp_path / "samples.jsonl", [("27", "Making my parents proud is a main goal of mine.")]
    )
    out = tmp_path / "out"

    assert build("--culture", "Arabic", "--samples", samples, "--culturepark", run, "--out", out) == 0

    chats = [
        check_openai_line(line) for line in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    # 48 labelled seeds, one sample, and three distinct Arabic opinions.
    assert len(chats) == 48 + 1 + 2 + 1
    seed, sample, first, second = chats[:4]
    # The seed, its sample, then its opinions sorted: each asks the seed's own prompt.
    assert sample.messages[1].content.startswith("Statement: Making my parents proud")
    assert [m.content for m in first.messages[:2]] == [m.content for m in seed.messages[:2]]
    assert [m.content for m in second.messages[:2]] == [m.content for m in seed.messages[:2]]
    assert seed.messages[2].content == str(q27)
    assert first.messages[2].content == f"{q27}\nReason: I believe honouring my family is my first duty."
    assert second.messages[2].content == f"{q27}\nReason: I work hard so that my parents can be proud of me."
    (at,) = [i for i, c in enumerate(chats) if "better suited to lead" in c.messages[2].content]
    assert chats[at].messages[2].content == f"{q29}\nReason: I think men are better suited to lead a country."
    assert chats[at - 1].messages[2].content == str(q29)  # Q29's seed, asked in the same words
    assert [m.content for m in chats[at].messages[:2]] == [m.content for m in chats[at - 1].messages[:2]]
    assert not any("my goals for myself" in c.messages[2].content for c in chats)
    # Only the seeds' usual warning: no opinion was lost or relabelled.
    assert capsys.readouterr().err.strip().splitlines() == [
        "warning: Arabic: no valid answers to Q36, Q226; skipped 2 seed and 0 augmented examples"
    ]

    card = (out / "README.md").read_text(encoding="utf-8")
    assert "| Seed examples | Augmented examples | CulturePark examples |" in card
    assert "| 48 | 1 | 3 | Q36, Q226 (2 seed, 0 augmented examples) |" in card
    assert "5 opinions, 3 of them distinct and of the cultures built, 1 repeats dropped" in card
    assert f"--culturepark {run}" in card
    assert f"{q27}\nReason: I believe honouring" in card


def test_the_trainer_takes_culturepark_examples_and_learns_the_whole_answer(tmp_path, arabic_labels):
    from tests.train_helpers import tiny_tokenizer
    from trainers.chat_data import IGNORE_INDEX, encode_conversation, load_chat_data

    run = write_run(tmp_path / "park", [opinion("Arabic", "27", "I honour my parents.", arabic_labels["27"])])
    assert build("--culture", "Arabic", "--culturepark", run, "--out", tmp_path / "out") == 0

    data = load_chat_data(tmp_path / "out")
    (example,) = [c for c in data.train if "Reason:" in c[2]["content"]]
    tokenizer = tiny_tokenizer()
    encoded = encode_conversation(tokenizer, example, max_length=1024)
    learned = tokenizer.decode([token for token in encoded.labels if token != IGNORE_INDEX])
    assert learned == f"{arabic_labels['27']}\nReason: I honour my parents.<|im_end|>\n"


def test_the_hf_format_marks_culturepark_examples_by_source(tmp_path, arabic_labels):
    from datasets import load_from_disk

    run = write_run(tmp_path / "park", [opinion("Arabic", "27", "I honour my parents.", arabic_labels["27"])])
    assert build("--culture", "Arabic", "--culturepark", run, "--format", "hf", "--out", tmp_path / "hf") == 0

    rows = [row for row in load_from_disk(str(tmp_path / "hf"))["train"] if row["source"] == "culturepark"]
    assert [(row["q_id"], row["label"]) for row in rows] == [("27", arabic_labels["27"])]


def test_an_opinion_verified_against_another_label_gets_this_builds_label(tmp_path, arabic_labels, capsys):
    run = write_run(
        tmp_path / "park",
        [
            opinion("Arabic", "27", "I honour my parents.", 9),
            opinion("Arabic", "27", "I obey my father.", 9),
            opinion("Arabic", "29", "I vote for men.", arabic_labels["29"]),
        ],
    )
    out = tmp_path / "out"
    assert build("--culture", "Arabic", "--culturepark", run, "--out", out) == 0

    err = capsys.readouterr().err.strip().splitlines()
    assert (
        "warning: 2 CulturePark opinions were verified against another label than this build's "
        f"(Arabic Q27: run 9, build {arabic_labels['27']}); they are answered with this build's label"
    ) in err
    answers = [row["messages"][2]["content"] for row in read_jsonl(out / "train.jsonl")]
    assert f"{arabic_labels['27']}\nReason: I honour my parents." in answers
    assert "2 verified against another label than this build's" in (out / "README.md").read_text(
        encoding="utf-8"
    )


def test_opinions_of_a_question_without_a_label_are_skipped_and_counted(tmp_path, arabic_labels, capsys):
    assert arabic_labels["36"] is None  # asked in neither Iraq nor Jordan
    run = write_run(tmp_path / "park", [opinion("Arabic", "36", "I would not mind.", 1)])
    out = tmp_path / "out"
    assert build("--culture", "Arabic", "--culturepark", run, "--out", out) == 0

    assert capsys.readouterr().err.strip().splitlines() == [
        "warning: Arabic: no valid answers to Q36, Q226; skipped 2 seed, 0 augmented and 1 culturepark examples"
    ]
    assert len(read_jsonl(out / "train.jsonl")) == 48
    assert "Q36, Q226 (2 seed, 0 augmented, 1 culturepark examples)" in (out / "README.md").read_text(
        encoding="utf-8"
    )


def test_a_run_without_opinions_of_the_culture_builds_from_the_seeds_with_a_warning(tmp_path, capsys):
    run = write_run(tmp_path / "park", [opinion("German", "27", "I decide my goals for myself.", 2)])
    assert build("--culture", "Arabic", "--culturepark", run, "--out", tmp_path / "out") == 0
    assert f"warning: --culturepark {run} holds no opinions of Arabic" in capsys.readouterr().err.splitlines()
    assert len(read_jsonl(tmp_path / "out" / "train.jsonl")) == 48


def _no_opinions_file(folder: Path) -> Path:
    run = write_run(folder, [])
    (run / "opinions.jsonl").unlink()
    return run


def _malformed(folder: Path) -> Path:
    run = write_run(folder, [opinion("Arabic", "27", "I honour my parents.", 1)])
    with (run / "opinions.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"culture": "Arabic"\n')
    return run


def _unknown_seeds(folder: Path) -> Path:
    return write_run(
        folder,
        [
            opinion("Arabic", "27", "I honour my parents.", 1),
            opinion("Arabic", "999", "I wonder.", 1),
            opinion("German", "1000", "I doubt.", 1),
        ],
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: folder, "error: --culturepark {run} does not exist"),
        (lambda folder: (folder.write_text("x"), folder)[1], "error: --culturepark {run} is not a directory"),
        (
            lambda folder: (folder.mkdir(), folder)[1],
            "error: --culturepark {run} is not a culturepark run (no readable manifest.json)",
        ),
        (
            lambda folder: write_run(folder, [], command="augment"),
            "error: --culturepark {run} is a 'augment' run, not a culturepark run",
        ),
        (
            lambda folder: write_run(folder, [], status="aborted"),
            "error: --culturepark {run} is not a finished culturepark run (status 'aborted'); resume it first",
        ),
        (_no_opinions_file, "error: --culturepark {run} holds no opinions.jsonl"),
        (_malformed, "error: {run}/opinions.jsonl:2: not valid JSON (Expecting ',' delimiter)"),
        (
            lambda folder: write_run(
                folder, [opinion("Arabic", "27", "I honour my parents.", 1, verdict="maybe")]
            ),
            "error: {run}/opinions.jsonl:1: field 'verdict': input should be 'entail', 'contradict' or 'unrelated'",
        ),
        (
            _unknown_seeds,
            "error: {run}/opinions.jsonl: seed_id '999' (line 2), '1000' (line 3) not in the seed set {seeds}",
        ),
    ],
)
def test_an_unusable_culturepark_run_is_one_line_and_writes_nothing(tmp_path, capsys, make, message):
    run = make(tmp_path / "park")
    assert build("--culture", "Arabic", "--culturepark", run, "--out", tmp_path / "out") == 2
    from builders.build import DEFAULT_SEEDS

    assert one_error(capsys) == message.format(run=run, seeds=DEFAULT_SEEDS)
    assert not (tmp_path / "out").exists()


def test_the_culturepark_run_is_never_replaced_by_the_dataset(tmp_path, capsys):
    run = write_run(tmp_path / "park", [opinion("Arabic", "27", "I honour my parents.", 1)])
    assert build("--culture", "Arabic", "--culturepark", run, "--out", run, "--overwrite") == 2
    assert (
        one_error(capsys) == f"error: --out {run} is the input --culturepark {run}; choose another directory"
    )
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json", "opinions.jsonl"]
