"""The task registry: every shipped row parses, meanings are read per label, selection says what exists."""

from pathlib import Path

import pytest

from evals.tasks import (
    DEFAULT_DATA_DIR,
    DEFAULT_TASKS,
    Task,
    TaskRegistryError,
    load_registry,
    parse_meanings,
    select_tasks,
)

HEADER = "culture\ttask\tpath\trows\ttext_field\tlabels\tmeaning\tin_shared\n"


def write_registry(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "tasks.tsv"
    path.write_text(header + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def registry() -> list[Task]:
    return load_registry()


def by_key(registry: list[Task], key: str) -> Task:
    return next(task for task in registry if task.key == key)


# --- the shipped registry --------------------------------------------------------------------------


def test_shipped_registry_has_the_papers_60_tasks_plus_olid_in_10_cultures(registry):
    counts: dict[str, int] = {}
    for task in registry:
        counts[task.culture] = counts.get(task.culture, 0) + 1
    assert counts == {
        "Arabic": 10,
        "Turkish": 7,
        "Greek": 2,
        "German": 5,
        "Spanish": 11,
        "Bengali": 6,
        "Chinese": 2,
        "Korean": 6,
        "Portuguese": 5,
        "English": 7,
    }
    assert len({task.key for task in registry}) == 61
    not_in_paper = [task.key for task in registry if "not in the paper" in task.note]
    assert not_in_paper == ["English/offensive_detect_olid"]


def test_every_shipped_row_has_a_relative_path_a_text_field_labels_and_a_meaning_per_label(registry):
    for task in registry:
        assert not task.path.startswith("/") and task.path.endswith(".jsonl"), task.key
        assert task.text_field in ("data", "tweet", "comment"), task.key
        assert task.labels and all(task.labels), task.key
        assert set(task.meanings) == set(task.labels), task.key
        assert task.note, task.key


def test_the_shipped_registry_is_the_shared_one_unchanged():
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "downstream" / "TASKS.tsv"
    if not shared.exists():
        pytest.skip("no shared drop on this machine")
    assert DEFAULT_TASKS.read_bytes() == shared.read_bytes()


def test_the_nine_in_shared_files_ship_in_the_upstream_layout(registry):
    shipped = [task for task in registry if (DEFAULT_DATA_DIR / task.path).is_file()]
    assert [task.key for task in shipped] == [
        "Arabic/offensive_detect",
        "Turkish/offensive_detect",
        "German/offensive_detect_eval",
        "Spanish/offensive_detect_mex_a3t",
        "Bengali/threat_detect",
        "Chinese/bias_on_gender_detect",
        "Korean/hate_detect_3",
        "Portuguese/offensive_detect_2",
        "English/offensive_detect_olid",
    ]


def test_a_row_keeps_every_column(registry):
    task = by_key(registry, "Arabic/offensive_detect")
    assert task == Task(
        culture="Arabic",
        name="offensive_detect",
        path="Arabic/OffensEval2020/OffensEval.jsonl",
        rows=2000,
        text_field="tweet",
        labels=("NOT", "OFF"),
        meanings={"NOT": "not offensive", "OFF": "offensive"},
        note="OFF = offensive, NOT = not offensive",
    )
    assert task.key == "Arabic/offensive_detect"


# --- meanings, one case per form in the shipped registry -------------------------------------------


@pytest.mark.parametrize(
    ("key", "meanings"),
    [
        ("Arabic/hate_detect_osact4", {"HS": "hate speech", "NOT_HS": "not hate speech"}),
        ("Arabic/vulgar_detect_mp", {"-": "not vulgar", "V": "vulgar"}),
        ("Arabic/spam_detect", {"Ham": "not spam", "Spam": "spam"}),
        (
            "Arabic/hate_detect_fine-grained",
            {
                "HS1": "hate speech by target: race",
                "HS2": "hate speech by target: religion",
                "HS3": "hate speech by target: ideology",
                "HS4": "hate speech by target: disability",
                "HS5": "hate speech by target: social class",
                "HS6": "hate speech by target: gender",
                "NOT_HS": "not hate speech",
            },
        ),
        (
            "Turkish/offensive_detect_finegrained",
            {
                "grp": "at a group",
                "ind": "targeted at an individual",
                "non": "not offensive",
                "oth": "other target",
                "prof": "untargeted profanity",
            },
        ),
        ("German/hate_off_detect", {"HOF": "hate or offensive", "NOT": "neither"}),
        (
            "Bengali/threat_detect",
            {"1": "the text contains threat", "0": "the text does not contain threat"},
        ),
        (
            "English/hostility_directness_detect",
            {
                "1": "the text contains direct (not indirect) hostility",
                "0": "the text does not contain direct (not indirect) hostility",
            },
        ),
        (
            "English/hate_offens_detect",
            {"0": "hate speech", "1": "offensive but not hate", "2": "neither"},
        ),
        # the trailing remark "(not in the paper's task list)" is about the task, not the label
        ("English/offensive_detect_olid", {"NOT": "not offensive", "OFF": "offensive"}),
    ],
)
def test_meanings_are_read_per_label(registry, key, meanings):
    assert by_key(registry, key).meanings == meanings


def test_an_empty_first_label_is_not_a_class_and_the_elliptic_not_is_spelled_out(registry):
    korean = by_key(registry, "Korean/hate_detect_6")
    assert korean.labels == ("HS", "NOT_HS")
    assert korean.meanings == {"HS": "hate speech", "NOT_HS": "not hate speech"}
    assert korean.note.startswith("HS = hate speech, NOT_HS = not;")


def test_a_single_label_task_whose_meaning_is_prose_falls_back_to_the_label(registry):
    solid = by_key(registry, "English/offensive_detect_easy")
    assert solid.labels == ("NOT",)
    assert solid.meanings == {"NOT": "NOT"}


def test_a_label_word_inside_a_meaning_does_not_start_a_new_entry():
    assert parse_meanings("NOT = neither OFF nor HS, OFF = offensive", ["NOT", "OFF"]) == {
        "NOT": "neither OFF nor HS",
        "OFF": "offensive",
    }


def test_commas_inside_a_meaning_are_kept_when_no_label_follows():
    assert parse_meanings("1 = threatening, violent or abusive; 0 = neither", ["0", "1"]) == {
        "1": "threatening, violent or abusive",
        "0": "neither",
    }


def test_colon_form_and_missing_labels():
    assert parse_meanings("pos: praise", ["pos", "neg"]) == {"pos": "praise", "neg": "neg"}
    assert parse_meanings("", ["a", "b"]) == {"a": "a", "b": "b"}


# --- bad registry files ----------------------------------------------------------------------------


def test_a_user_file_without_in_shared_and_with_comments_loads(tmp_path):
    path = write_registry(
        tmp_path,
        "# my own tasks",
        "",
        "Klingon\tinsult\tKlingon/insult.jsonl\t\tdata\tY N\tY = insult, N = no insult",
        header="culture\ttask\tpath\trows\ttext_field\tlabels\tmeaning\n",
    )
    [task] = load_registry(path)
    assert (task.key, task.rows, task.meanings) == ("Klingon/insult", 0, {"Y": "insult", "N": "no insult"})


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["Arabic\tx\ta.jsonl\t10\tdata"], "tasks.tsv:2: expected 8 tab-separated fields, got 5"),
        (["Arabic\tx\ta.jsonl\tmany\tdata\t0 1\t\t"], "tasks.tsv:2: rows 'many' is not a whole number"),
        (["Arabic\tx\t/etc/a.jsonl\t1\tdata\t0 1\t\t"], "tasks.tsv:2: path '/etc/a.jsonl' must be relative"),
        (["Arabic\tx\t../a.jsonl\t1\tdata\t0 1\t\t"], "tasks.tsv:2: path '../a.jsonl' must be relative"),
        (["Arabic\tx\ta.jsonl\t1\tdata\t  \t\t"], "tasks.tsv:2: no labels in '  '"),
        (["Arabic\tx\ta.jsonl\t1\tdata\tOFF off\t\t"], "tasks.tsv:2: labels 'OFF off' differ only in case"),
        (["\tx\ta.jsonl\t1\tdata\t0 1\t\t"], "tasks.tsv:2: empty culture"),
        (["all\tx\ta.jsonl\t1\tdata\t0 1\t\t"], "tasks.tsv:2: 'all' cannot name a culture"),
        (
            ["Arabic\tx\ta.jsonl\t1\tdata\t0 1\t\t", "arabic\tX\tb.jsonl\t1\tdata\t0 1\t\t"],
            "tasks.tsv:3: task arabic/X is already defined on line 2",
        ),
        ([], "has a header but no tasks"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_file_and_line(tmp_path, rows, message):
    with pytest.raises(TaskRegistryError) as error:
        load_registry(write_registry(tmp_path, *rows))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_header_without_required_columns_is_named(tmp_path):
    path = write_registry(tmp_path, "a\tb", header="culture\ttask\n")
    with pytest.raises(TaskRegistryError, match=r"tasks.tsv:1: header lacks column\(s\) path, rows"):
        load_registry(path)


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(TaskRegistryError, match="does not exist"):
        load_registry(tmp_path / "nope.tsv")
    path = tmp_path / "latin1.tsv"
    path.write_bytes(HEADER.encode() + "Espa\xf1ol\tx\ta\t1\tdata\t0 1\t\t\n".encode("latin-1"))
    with pytest.raises(TaskRegistryError, match=r"latin1.tsv:2: not valid UTF-8"):
        load_registry(path)


# --- selection -------------------------------------------------------------------------------------


def test_no_culture_or_all_selects_everything(registry):
    assert select_tasks(registry, None, None) == registry
    assert select_tasks(registry, ["ALL"], None) == registry


def test_cultures_match_without_case_and_keep_registry_order(registry):
    chosen = select_tasks(registry, ["korean", "Arabic"], None)
    assert [task.culture for task in chosen] == ["Arabic"] * 10 + ["Korean"] * 6


def test_names_match_task_names_across_cultures_or_full_keys(registry):
    by_name = select_tasks(registry, None, ["OFFENSIVE_DETECT"])
    assert [task.key for task in by_name] == [
        "Arabic/offensive_detect",
        "Turkish/offensive_detect",
        "Greek/offensive_detect",
    ]
    by_key_name = select_tasks(registry, ["all"], ["turkish/offensive_detect", "Korean/hate_detect_3"])
    assert [task.key for task in by_key_name] == ["Turkish/offensive_detect", "Korean/hate_detect_3"]


def test_an_unknown_culture_lists_the_known_ones(registry):
    with pytest.raises(TaskRegistryError) as error:
        select_tasks(registry, ["Arabic", "Klingon"], None)
    assert str(error.value) == (
        "unknown culture 'Klingon'; known: Arabic, Turkish, Greek, German, Spanish, Bengali, Chinese, "
        "Korean, Portuguese, English"
    )


def test_an_unknown_task_lists_the_tasks_of_the_chosen_cultures(registry):
    with pytest.raises(TaskRegistryError) as error:
        select_tasks(registry, ["Chinese"], ["offensive_detect"])
    assert str(error.value) == (
        "unknown task 'offensive_detect'; known: Chinese/spam_detect, Chinese/bias_on_gender_detect"
    )
