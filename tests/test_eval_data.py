"""Loading task files: every untidy row is repaired in a stated way or skipped and counted, never lost."""

import json
from collections import Counter
from pathlib import Path

import pytest

from evals.data import (
    EvalItem,
    cut_text,
    find_task_file,
    load_task,
    load_tasks,
    normalise_value,
    stratified_sample,
)
from evals.tasks import DEFAULT_DATA_DIR, Task, load_registry, parse_meanings


def make_task(labels=("NOT", "OFF"), text_field="data", path="Culture/Set/data.jsonl") -> Task:
    return Task(
        culture="Culture",
        name="set",
        path=path,
        rows=0,
        text_field=text_field,
        labels=tuple(labels),
        meanings=parse_meanings("", labels),
        note="",
    )


def write_lines(root: Path, lines: list, path="Culture/Set/data.jsonl") -> Path:
    """Dicts are written as JSON, strings as they are (to write broken lines)."""
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(
        line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines
    )
    file.write_text(body + "\n", encoding="utf-8")
    return file


def load(tmp_path, lines, **task_args):
    write_lines(tmp_path, lines)
    return load_task(make_task(**task_args), [tmp_path])


# --- finding files ---------------------------------------------------------------------------------


def test_the_first_data_folder_that_has_the_file_wins(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    write_lines(second, [{"data": "x", "label": "OFF"}])
    write_lines(first, [{"data": "y", "label": "NOT"}])
    assert find_task_file(make_task(), [tmp_path / "none", first, second]) == first / "Culture/Set/data.jsonl"
    assert find_task_file(make_task(), [second]) == second / "Culture/Set/data.jsonl"


def test_a_missing_file_is_none_not_an_error(tmp_path):
    assert find_task_file(make_task(), [tmp_path]) is None
    assert load_task(make_task(), [tmp_path]) is None
    loaded, missing = load_tasks([make_task()], [tmp_path])
    assert (loaded, [task.key for task in missing]) == ([], ["Culture/set"])


# --- texts -----------------------------------------------------------------------------------------


def test_the_text_comes_from_the_tasks_field_then_data_tweet_comment(tmp_path):
    data = load(
        tmp_path,
        [
            {"tweet": "from tweet", "data": "from data", "label": "OFF"},
            {"comment": "from comment", "label": "NOT"},
            {"tweet": None, "data": "data beside a null tweet", "label": "NOT"},
        ],
        text_field="tweet",
    )
    assert [item.text for item in data.items] == ["from tweet", "from comment", "data beside a null tweet"]


def test_a_text_that_is_a_number_becomes_its_string(tmp_path):
    data = load(
        tmp_path, [{"data": 1.0, "label": "NOT"}, {"data": 42, "label": "OFF"}, {"data": 2.5, "label": "OFF"}]
    )
    assert [item.text for item in data.items] == ["1", "42", "2.5"]


def test_empty_texts_are_skipped_and_counted(tmp_path):
    data = load(
        tmp_path,
        [
            {"data": "", "label": "OFF"},
            {"data": "   ", "label": "OFF"},
            {"data": None, "label": "NOT"},
            {"data": "ok", "label": "NOT"},
        ],
    )
    assert ([item.text for item in data.items], data.empty_texts) == (["ok"], 3)


def test_long_texts_are_cut_at_a_word_and_counted(tmp_path):
    long_text = "word " * 8000  # 40,000 characters
    data = load(tmp_path, [{"data": long_text, "label": "OFF"}, {"data": "short", "label": "NOT"}])
    cut = data.items[0]
    assert cut.truncated and len(cut.text) <= 2000 and cut.text.endswith("word")
    assert not data.items[1].truncated
    assert data.truncated == 1


def test_cutting_keeps_whole_words_and_hard_cuts_scripts_without_spaces():
    assert cut_text("alpha beta gamma", 12) == "alpha beta"
    assert cut_text("alpha beta gamma", 10) == "alpha beta"
    assert cut_text("短文本没有空格的句子", 4) == "短文本没"
    # a single space early in the text would waste most of the budget, so the cut is hard
    assert cut_text("a " + "x" * 20, 10) == "a " + "x" * 8
    assert cut_text("fits", 10) == "fits"


# --- labels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" OFF ", "OFF"),
        (1, "1"),
        (1.0, "1"),
        ("1.0", "1"),
        (0, "0"),
        ("HS3", "HS3"),
        ("-", "-"),
        (2.5, "2.5"),
    ],
)
def test_label_values_are_normalised(value, expected):
    assert normalise_value(value) == expected


@pytest.mark.parametrize("value", [None, "", "  ", float("nan")])
def test_no_label_at_all_is_none(value):
    assert normalise_value(value) is None


@pytest.mark.parametrize(
    ("labels", "raw", "gold"),
    [
        (("NOT", "OFF"), ["off", "Not", " OFF "], ["OFF", "NOT", "OFF"]),
        (("HS", "NOT_HS"), ["hs", "not_hs"], ["HS", "NOT_HS"]),
        (("Ham", "Spam"), ["HAM", "spam"], ["Ham", "Spam"]),
        (("HOF", "NOT"), ["hof", "NOT"], ["HOF", "NOT"]),
        (("-", "V"), ["-", "v"], ["-", "V"]),
        (("0", "1"), [0, 1.0, "1", "0.0"], ["0", "1", "1", "0"]),
        (("0", "1", "2"), [2, "2.0", 0], ["2", "2", "0"]),
        (("HS1", "HS6", "NOT_HS"), ["hs1", "HS6", "NOT_HS"], ["HS1", "HS6", "NOT_HS"]),
        (("grp", "ind", "non", "oth", "prof"), ["GRP", "ind", "Prof"], ["grp", "ind", "prof"]),
    ],
)
def test_labels_of_every_vocabulary_match_the_task_set_in_its_spelling(tmp_path, labels, raw, gold):
    data = load(
        tmp_path, [{"data": f"text {i}", "label": label} for i, label in enumerate(raw)], labels=labels
    )
    assert [item.gold for item in data.items] == gold
    assert data.unknown_labels == {}


def test_unlabelled_rows_are_skipped_and_counted(tmp_path):
    data = load(
        tmp_path,
        [
            {"data": "a", "label": ""},
            {"data": "b", "label": None},
            {"data": "c"},
            {"data": "d", "label": " "},
            '{"data": "e", "label": NaN}',
            {"data": "f", "label": "HS"},
        ],
        labels=("HS", "NOT_HS"),
    )
    assert ([item.text for item in data.items], data.unlabelled) == (["f"], 5)


def test_labels_outside_the_set_are_skipped_and_counted_per_value(tmp_path):
    data = load(
        tmp_path,
        [
            {"data": "a", "label": "OFF"},
            {"data": "b", "label": "HATE"},
            {"data": "c", "label": 3},
            {"data": "d", "label": "hate"},
            {"data": "e", "label": 3.0},
        ],
    )
    assert [item.text for item in data.items] == ["a"]
    assert data.unknown_labels == {"3": 2, "HATE": 1, "hate": 1}


# --- broken lines, ids, conflicts ------------------------------------------------------------------


def test_broken_lines_are_recorded_with_file_and_line_and_the_rest_loads(tmp_path):
    file = tmp_path / "Culture/Set/data.jsonl"
    data = load(
        tmp_path,
        [
            {"data": "first", "label": "OFF"},
            '{"data": "cut off in the midd',
            "[1, 2]",
            {"text": "wrong field", "label": "NOT"},
            {"data": ["a", "list"], "label": "NOT"},
            "",
            {"data": "last", "label": "NOT"},
        ],
    )
    assert [item.text for item in data.items] == ["first", "last"]
    assert data.broken_lines == [
        f"{file}:2: not valid JSON",
        f"{file}:3: not a JSON object (a list)",
        f"{file}:4: no text field (looked for data, tweet, comment)",
        f"{file}:5: data is a list, not a text",
    ]
    assert data.notes()[0].startswith("Culture/set: 4 broken line(s) skipped: ")


def test_bad_utf8_and_a_byte_order_mark(tmp_path):
    file = tmp_path / "Culture/Set/data.jsonl"
    file.parent.mkdir(parents=True)
    file.write_bytes(
        b'\xef\xbb\xbf{"data": "after a BOM", "label": "OFF"}\r\n'
        b'{"data": "caf\xe9", "label": "NOT"}\n'
        b'{"data": "ok", "label": "NOT"}'
    )
    data = load_task(make_task(), [tmp_path])
    assert [item.text for item in data.items] == ["after a BOM", "ok"]
    assert data.broken_lines == [f"{file}:2: not valid UTF-8"]


def test_item_ids_are_the_rows_id_else_the_line_number_and_stay_unique(tmp_path):
    data = load(
        tmp_path,
        [
            {"id": 8001, "data": "a", "label": "OFF"},
            {"data": "b", "label": "NOT"},
            {"id": "8001", "data": "c", "label": "NOT"},
            {"id": "", "data": "d", "label": "NOT"},
        ],
    )
    assert [item.item_id for item in data.items] == ["8001", "2", "8001@line3", "4"]
    assert data.duplicate_ids == 1


def test_the_same_text_with_different_labels_is_kept_twice_and_counted(tmp_path):
    data = load(
        tmp_path,
        [
            {"data": "same words", "label": "OFF"},
            {"data": " same words ", "label": "NOT"},
            {"data": "twice alike", "label": "NOT"},
            {"data": "twice alike", "label": "NOT"},
        ],
    )
    assert [(item.text, item.gold) for item in data.items] == [
        ("same words", "OFF"),
        ("same words", "NOT"),
        ("twice alike", "NOT"),
        ("twice alike", "NOT"),
    ]
    assert data.conflicting == 1


def test_each_skipped_row_is_counted_once_and_a_clean_file_has_no_notes(tmp_path):
    data = load(tmp_path, [{"data": "", "label": ""}, {"data": "", "label": "BAD"}])
    assert (data.unlabelled, data.unknown_labels, data.empty_texts) == (1, {"BAD": 1}, 0)
    clean = load(tmp_path, [{"data": "x", "label": "OFF"}])
    assert clean.notes() == []


def test_a_directory_where_the_file_should_be_counts_as_missing(tmp_path):
    (tmp_path / "Culture/Set/data.jsonl").mkdir(parents=True)
    assert load_task(make_task(), [tmp_path]) is None


def test_the_task_key_is_on_every_item(tmp_path):
    data = load(tmp_path, [{"data": "x", "label": "OFF"}])
    assert data.items == [EvalItem("Culture/set", "1", "x", "OFF", False)]


# --- the nine shipped files ------------------------------------------------------------------------

SHIPPED = {
    "Arabic/offensive_detect": {"NOT": 1598, "OFF": 402},
    "Turkish/offensive_detect": {"NOT": 2812, "OFF": 716},
    "German/offensive_detect_eval": {"NOT": 2329, "OFF": 1202},
    "Spanish/offensive_detect_mex_a3t": {"NOT": 648, "OFF": 352},
    "Bengali/threat_detect": {"0": 930, "1": 70},
    "Chinese/bias_on_gender_detect": {"0": 928, "1": 72},
    "Korean/hate_detect_3": {"HS": 469, "NOT_HS": 531},
    "Portuguese/offensive_detect_2": {"NOT": 831, "OFF": 419},
    "English/offensive_detect_olid": {"NOT": 665, "OFF": 335},
}
CONFLICTING = {
    "Bengali/threat_detect": 2,
    "Chinese/bias_on_gender_detect": 1,
    "Portuguese/offensive_detect_2": 1,
}


def test_the_nine_shipped_files_load_whole_with_their_label_counts():
    loaded, missing = load_tasks(load_registry(), [DEFAULT_DATA_DIR])
    assert len(missing) == 52
    assert {data.task.key: dict(Counter(item.gold for item in data.items)) for data in loaded} == SHIPPED
    for data in loaded:
        assert len(data.items) == data.task.rows, data.task.key
        assert (data.unlabelled, data.empty_texts, data.truncated, data.broken_lines) == (0, 0, 0, []), (
            data.task.key
        )
        assert data.unknown_labels == {}, data.task.key
        assert data.conflicting == CONFLICTING.get(data.task.key, 0), data.task.key
        assert len({item.item_id for item in data.items}) == len(data.items), data.task.key


def test_the_shipped_arabic_ids_and_the_bengali_number_text():
    registry = {task.key: task for task in load_registry()}
    arabic = load_task(registry["Arabic/offensive_detect"], [DEFAULT_DATA_DIR])
    assert arabic.items[0].item_id == "8001"
    bengali = load_task(registry["Bengali/threat_detect"], [DEFAULT_DATA_DIR])
    assert bengali.items[279].text == "1"  # line 280 holds {"data": 1.0, ...}


# --- stratified sampling ---------------------------------------------------------------------------


def items_with(golds: str) -> list[EvalItem]:
    return [EvalItem("t/x", str(i), f"text {i}", gold, False) for i, gold in enumerate(golds)]


def test_allocation_is_proportional_by_largest_remainder():
    items = items_with("A" * 60 + "B" * 30 + "C" * 10)
    sample = stratified_sample(items, 10)
    assert Counter(item.gold for item in sample) == {"A": 6, "B": 3, "C": 1}
    # 7 x (0.6, 0.3, 0.1) = 4.2, 2.1, 0.7: floors 4, 2, 0 and the one left goes to C's remainder
    assert Counter(item.gold for item in stratified_sample(items, 7)) == {"A": 4, "B": 2, "C": 1}


def test_every_label_gets_one_place_when_n_allows():
    items = items_with("A" * 97 + "B" * 2 + "C")
    assert Counter(item.gold for item in stratified_sample(items, 3)) == {"A": 1, "B": 1, "C": 1}
    assert Counter(item.gold for item in stratified_sample(items, 5)) == {"A": 3, "B": 1, "C": 1}
    assert Counter(item.gold for item in stratified_sample(items, 2)) == {"A": 2}


def test_the_sample_is_deterministic_for_a_seed_and_keeps_file_order():
    items = items_with("AB" * 200)
    first = stratified_sample(items, 50, seed=7)
    assert first == stratified_sample(items, 50, seed=7)
    assert first != stratified_sample(items, 50, seed=8)
    positions = [int(item.item_id) for item in first]
    assert positions == sorted(positions) and len(set(positions)) == 50


def test_all_items_when_n_covers_them_and_none_for_zero():
    items = items_with("AAB")
    assert stratified_sample(items, 3) == items
    assert stratified_sample(items, 10) == items
    assert stratified_sample(items, 0) == []
    with pytest.raises(ValueError, match="-1"):
        stratified_sample(items, -1)


def test_a_shipped_file_samples_with_its_rare_class():
    registry = {task.key: task for task in load_registry()}
    bengali = load_task(registry["Bengali/threat_detect"], [DEFAULT_DATA_DIR])
    sample = stratified_sample(bengali.items, 20)
    # 20 x 70/1000 = 1.4 threats: one place, as a proportional share rounds
    assert Counter(item.gold for item in sample) == {"0": 19, "1": 1}


def test_a_file_that_cannot_be_read_is_reported_not_raised(tmp_path, monkeypatch):
    file = write_lines(tmp_path, [{"data": "x", "label": "OFF"}])

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    data = load_task(make_task(), [tmp_path])
    assert (data.items, data.broken_lines) == ([], [f"{file}: cannot be read (Permission denied)"])
