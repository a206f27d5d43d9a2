"""`evaluate --export-lm-eval`: the registry as lm-evaluation-harness tasks that ask evaluate's items
with evaluate's messages and score the answers with evaluate's parser and macro-F1."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from cli import main
from evals.data import load_task, stratified_sample
from evals.lm_eval_export import LmEvalExportError, export_lm_eval
from evals.metrics import accuracy, invalid_rate, macro_f1
from evals.tasks import DEFAULT_DATA_DIR, Task, load_registry, parse_meanings, select_tasks
from graphs.evaluate import render_classification

GERMAN_TASK = "cultureforge_german_offensive_detect_eval"


class _LoaderWithFunctions(yaml.SafeLoader):
    """Reads the exported YAML without importing anything: `!function x` becomes "!function x"."""


_LoaderWithFunctions.add_constructor("!function", lambda loader, node: f"!function {node.value}")


def read_yaml(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_LoaderWithFunctions)  # noqa: S506


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def german() -> list[Task]:
    return select_tasks(load_registry(), ["German"], ["offensive_detect_eval"])


def test_the_items_are_evaluates_stratified_sample_with_id_text_and_gold(tmp_path):
    export_lm_eval(german(), [DEFAULT_DATA_DIR], tmp_path, limit_per_task=20, seed=3, max_chars=80)
    rows = read_jsonl(tmp_path / "data" / f"{GERMAN_TASK}.jsonl")
    loaded = load_task(german()[0], [DEFAULT_DATA_DIR], max_chars=80)
    expected = stratified_sample(loaded.items, 20, seed=3)
    assert rows == [{"id": i.item_id, "text": i.text, "gold": i.gold} for i in expected]
    assert max(len(row["text"]) for row in rows) <= 80  # cut as evaluate cuts


def test_a_task_yaml_names_its_data_prompt_filter_and_metrics(tmp_path):
    written = export_lm_eval(german(), [DEFAULT_DATA_DIR], tmp_path, limit_per_task=20, max_tokens=24)
    assert [p.name for p in written] == [f"{GERMAN_TASK}.yaml", "cultureforge_german.yaml"]
    task = read_yaml(tmp_path / f"{GERMAN_TASK}.yaml")
    assert task["task"] == GERMAN_TASK and task["output_type"] == "generate_until"
    assert task["dataset_path"] == "json"
    assert (
        Path(task["dataset_kwargs"]["data_files"]["test"])
        == (tmp_path / "data" / f"{GERMAN_TASK}.jsonl").resolve()
    )
    assert task["description"] == "You are a German chatbot that knows German culture very well."
    assert task["doc_to_target"] == "gold"
    assert task["generation_kwargs"] == {
        "until": [],
        "max_gen_toks": 24,
        "temperature": 0.0,
        "do_sample": False,
    }
    [label_filter] = task["filter_list"][0]["filter"]
    assert label_filter == {
        "function": "!function utils.LabelFilter",
        "labels": ["NOT", "OFF"],
        "meanings": {"NOT": "not offensive", "OFF": "offensive"},
    }
    assert [(m["metric"], m["aggregation"], m["higher_is_better"]) for m in task["metric_list"]] == [
        ("!function utils.macro_f1", "!function utils.macro_f1_aggregate", True),
        ("!function utils.accuracy", "!function utils.accuracy_aggregate", True),
        ("!function utils.invalid_rate", "!function utils.invalid_rate_aggregate", False),
    ]
    group = read_yaml(tmp_path / "cultureforge_german.yaml")
    assert group["group"] == "cultureforge_german" and group["task"] == [GERMAN_TASK]
    assert {(m["metric"], m["weight_by_size"]) for m in group["aggregate_metric_list"]} == {
        ("macro_f1", False),
        ("accuracy", False),
        ("invalid_rate", False),
    }


def test_the_templates_render_evaluates_messages_even_when_they_hold_jinja_syntax(tmp_path):
    import jinja2

    data = tmp_path / "in"
    (data / "x").mkdir(parents=True)
    (data / "x" / "t.jsonl").write_text(
        '{"id": 1, "tweet": "a {{ b }} {% c %}", "label": "A"}\n{"id": 2, "tweet": "plain", "label": "B"}\n'
    )
    note = "A = uses {{ braces }}, B = {% not a tag %}"
    task = Task(
        "Klingon {{x}}", "odd", "x/t.jsonl", 2, "tweet", ("A", "B"), parse_meanings(note, ("A", "B")), note
    )
    export_lm_eval([task], [data], tmp_path / "out")
    spec = read_yaml(tmp_path / "out" / "cultureforge_klingon_x_odd.yaml")
    lm_eval_jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    for row in read_jsonl(tmp_path / "out" / "data" / "cultureforge_klingon_x_odd.jsonl"):
        system, user = render_classification(task, row["text"])
        assert lm_eval_jinja.from_string(spec["description"]).render(**row) == system["content"]
        assert lm_eval_jinja.from_string(spec["doc_to_text"]).render(**row) == user["content"]


def test_two_tasks_that_fold_to_one_lm_eval_name_are_refused(tmp_path):
    first = german()[0]
    second = Task("german", "offensive-detect-eval", first.path, 0, "tweet", first.labels, first.meanings, "")
    with pytest.raises(
        LmEvalExportError, match="would both be lm-eval task cultureforge_german_offensive_detect_eval"
    ):
        export_lm_eval([first, second], [DEFAULT_DATA_DIR], tmp_path)


def test_nothing_to_export_is_one_line_naming_the_folders(tmp_path):
    with pytest.raises(LmEvalExportError, match=f"none of the 1 task.*{tmp_path}"):
        export_lm_eval(german(), [tmp_path], tmp_path / "out")


def test_the_copied_scoring_code_needs_only_the_standard_library_and_numpy(tmp_path):
    export_lm_eval(german(), [DEFAULT_DATA_DIR], tmp_path, limit_per_task=4)
    for copy in ("parsing.py", "metrics.py"):
        source = (tmp_path / "cultureforge" / copy).read_text()
        assert source == (Path(__file__).resolve().parent.parent / "evals" / copy).read_text()
        roots = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots.add((node.module or "").split(".")[0])
        assert roots <= set(sys.stdlib_module_names) | {"numpy"}, (copy, roots - set(sys.stdlib_module_names))


def load_exported_utils(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_utils", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_filter_and_aggregations_score_as_evaluate_does(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is not installed")
    export_lm_eval(german(), [DEFAULT_DATA_DIR], tmp_path, limit_per_task=4)
    utils = load_exported_utils(tmp_path)
    labels, meanings = ("NOT", "OFF"), {"NOT": "not offensive", "OFF": "offensive"}
    answers = [
        ["OFF"],
        ["I'm sorry, I cannot classify this."],
        ["The text is not offensive."],
        ["NOT OFF"],
        [],
    ]
    parsed = utils.LabelFilter(labels=labels, meanings=meanings).apply(answers, [{}] * len(answers))
    assert parsed == ["OFF", "", "NOT", "", ""]
    gold = ["OFF", "OFF", "NOT", "NOT", "NOT"]
    items = [utils.macro_f1([g], [p], labels) for g, p in zip(gold, parsed, strict=True)]
    pred = [p or None for p in parsed]
    assert utils.macro_f1_aggregate(items) == macro_f1(gold, pred, labels)  # OFF 2/3, NOT 1/2
    assert macro_f1(gold, pred, labels) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert utils.accuracy_aggregate(items) == accuracy(gold, pred) == 0.4
    assert utils.invalid_rate_aggregate(items) == invalid_rate(pred) == 0.6


@pytest.mark.integration
def test_every_shipped_task_and_culture_group_loads_in_lm_eval(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval", reason="lm-eval is not installed")
    import datasets.config
    from lm_eval.tasks import TaskManager

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    written = export_lm_eval(load_registry(), [DEFAULT_DATA_DIR], tmp_path / "tasks", limit_per_task=5)
    groups = [read_yaml(p)["group"] for p in written if "group" in read_yaml(p)]
    assert len(groups) == 9 and len(written) == 18  # the 9 shipped tasks, one per culture
    manager = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    loaded = manager.load(groups)
    assert sorted(loaded["groups"]) == sorted(groups)
    tasks = list(loaded["tasks"].values())
    assert len(tasks) == 9 and all(len(list(t.test_docs())) == 5 for t in tasks)


@pytest.mark.integration
def test_lm_eval_on_the_loopback_server_gets_evaluates_macro_f1_from_the_same_answers(
    tmp_path, monkeypatch, mock_openai
):
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed")
    import datasets.config
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    limit = ["--culture", "German", "--task", "offensive_detect_eval", "--limit-per-task", "20"]
    run = tmp_path / "evaluate"
    assert (
        main(
            [
                "evaluate",
                "--quiet",
                "--base-url",
                mock_openai.base_url,
                "--model",
                "openai:mock-a",
                *limit,
                "--out",
                str(run),
            ]
        )
        == 0
    )
    evaluate_requests = [r.body["messages"] for r in mock_openai.requests()]

    export_lm_eval(german(), [DEFAULT_DATA_DIR], tmp_path / "tasks", limit_per_task=20)
    results = lm_eval.simple_evaluate(
        model="local-chat-completions",
        # tokenized_requests=False: messages go as JSON and no tokenizer is fetched (offline).
        model_args={
            "model": "mock-a",
            "base_url": f"{mock_openai.base_url}/chat/completions",
            "tokenized_requests": False,
            "max_retries": 1,
        },
        tasks=["cultureforge_german"],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False),
        apply_chat_template=True,
    )["results"]
    lm_eval_requests = [r.body["messages"] for r in mock_openai.requests()][len(evaluate_requests) :]

    def as_sent(requests: list) -> list[str]:
        return sorted(json.dumps(messages, sort_keys=True) for messages in requests)

    assert as_sent(lm_eval_requests) == as_sent(evaluate_requests)  # the same messages, item for item
    ours = json.loads((run / "results.json").read_text())["tasks"][0]
    predictions = read_jsonl(run / "predictions.jsonl")
    assert any(p["label"] is None for p in predictions)  # a refusal is in the sample: invalid is scored
    theirs = results[GERMAN_TASK]
    assert theirs["macro_f1,parse_label"] == ours["macro_f1"]
    assert theirs["accuracy,parse_label"] == ours["accuracy"]
    assert theirs["invalid_rate,parse_label"] == ours["invalid_rate"]
    assert results["cultureforge_german"]["macro_f1,parse_label"] == ours["macro_f1"]
