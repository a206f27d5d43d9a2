"""The fidelity review: a person's verdicts applied to a run, with unread samples called out."""

import json

from bench.fidelity_review import DEFAULT_REVIEW, main, read_review


def write_run(path, texts):
    path.mkdir()
    lines = [json.dumps({"seed_id": str(i % 2), "text": t}) for i, t in enumerate(texts)]
    (path / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (path / "manifest.json").write_text(json.dumps({"counts": {"seeds": 3}}), encoding="utf-8")


def write_review(path, rows):
    body = "".join(f"1\tsynonym\t{verdict}\t{text}\t\n" for text, verdict in rows)
    path.write_text("seed_id\tstage\tverdict\ttext\tnote\n" + body, encoding="utf-8")


def test_counts_verdicts_and_seeds(tmp_path, capsys):
    write_run(tmp_path / "run", ["a b", "c d", "e f"])
    write_review(tmp_path / "r.tsv", [("a b", "same"), ("c d", "changed"), ("e f", "same")])
    assert main([str(tmp_path / "run"), "--review", str(tmp_path / "r.tsv")]) == 0
    assert "3 reviewed: 2 keep the meaning (66.7%), 1 change it" in capsys.readouterr().out


def test_a_sample_nobody_read_is_listed_and_fails(tmp_path, capsys):
    write_run(tmp_path / "run", ["a b", "new text"])
    write_review(tmp_path / "r.tsv", [("a b", "same")])
    assert main([str(tmp_path / "run"), "--review", str(tmp_path / "r.tsv")]) == 1
    assert "not reviewed: new text" in capsys.readouterr().out


def test_an_unknown_verdict_is_a_one_line_error(tmp_path, capsys):
    write_run(tmp_path / "run", ["a b"])
    write_review(tmp_path / "r.tsv", [("a b", "fine")])
    assert main([str(tmp_path / "run"), "--review", str(tmp_path / "r.tsv")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_the_shipped_review_is_well_formed():
    review = read_review(DEFAULT_REVIEW)
    assert len(review) >= 35
