"""The downstream tasks as lm-evaluation-harness (0.4.x) task files, scored the way `evaluate` scores.

`python cli.py evaluate --export-lm-eval DIR` writes, for users who already run lm-eval on vLLM or
HF+peft:

    DIR/cultureforge_<culture>_<task>.yaml   one task per registry task (names lower-cased, [a-z0-9_])
    DIR/cultureforge_<culture>.yaml          one group per culture: unweighted mean over its tasks
    DIR/data/cultureforge_<culture>_<task>.jsonl   the items evaluate asks: {"id", "text", "gold"}
    DIR/utils.py                             the answer filter and the metrics the YAMLs name
    DIR/cultureforge/parsing.py, metrics.py  copies of evals/parsing.py and evals/metrics.py
    DIR/README.md                            how to run it, and where lm-eval differs from evaluate

Decisions, and why:
- The items are the ones evaluate uses: loaded by `evals.data.load_task` (same repairs, same cut at
  `max_chars`), and with `limit_per_task` the same stratified sample (`stratified_sample`, same seed).
  lm-eval's own `--limit` takes the first N in file order instead, which is not evaluate's sample.
- The messages are evaluate's: the culture's system prompt is the task's `description`, which lm-eval
  0.4 sends as the system message when the chat template is applied (`--apply_chat_template`, which
  chat-completions models require anyway), and `doc_to_text` renders exactly classify_v1's user
  message. Both are Jinja templates in lm-eval, so their fixed parts are escaped where they hold Jinja
  syntax, and every item is rendered here with an environment configured like lm-eval's and compared
  with `graphs.evaluate.render_classification` before anything is written.
- The scoring code is a copy of evaluate's own, written beside the YAMLs at each export, so the scores
  are evaluate's even where culture-forge is not installed (a GPU box running vLLM), and they cannot
  drift from the exporting version. Both modules need only the standard library and numpy.
- An answer the parser cannot read becomes "" (lm-eval's per-item pipeline cannot carry None); no
  label is empty, so it is wrong for macro-F1 as in evaluate, and counted in `invalid_rate`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

import prompts
from evals.data import TaskData, load_task, stratified_sample
from evals.tasks import Task
from graphs.evaluate import render_classification

PREFIX = "cultureforge"
FILTER_NAME = "parse_label"
# evaluate's scores each task reports (name -> higher is better); a group averages each over its tasks.
METRICS = {"macro_f1": True, "accuracy": True, "invalid_rate": False}
_VENDORED = ("parsing", "metrics")  # evals/<name>.py -> DIR/cultureforge/<name>.py
_JINJA_MARKS = ("{{", "{%", "{#")
# Configured as lm_eval.utils.env is (0.4.x), so that what is checked here is what lm-eval renders.
_LM_EVAL_JINJA = jinja2.Environment(
    loader=jinja2.BaseLoader(), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
_EVALS_DIR = Path(__file__).resolve().parent


class LmEvalExportError(ValueError):
    """Nothing could be exported, or a task cannot be expressed as an lm-eval task."""


@dataclass(frozen=True)
class _FunctionRef:
    """A `!function module.name` tag: lm-eval imports `name` from `module.py` beside the YAML."""

    target: str


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True  # a label list repeated under each metric reads better than an &id001 anchor


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    # Prompts as block text, line for line as the model sees them.
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_FunctionRef, lambda dumper, ref: dumper.represent_scalar("!function", ref.target))


def export_lm_eval(
    tasks: Sequence[Task],
    data_dirs: Sequence[Path],
    out_dir: Path,
    *,
    limit_per_task: int | None = None,
    seed: int = 0,
    max_chars: int = 2000,
    max_tokens: int = 16,
    temperature: float = 0.0,
) -> list[Path]:
    """Load `tasks` as evaluate does and write them with `write_lm_eval_tasks`.

    Tasks whose file is in none of `data_dirs`, or that hold no usable item, are left out (the caller
    reports them as evaluate does); LmEvalExportError when none is left.
    """
    data: list[TaskData] = []
    for task in tasks:
        loaded = load_task(task, data_dirs, max_chars=max_chars)
        if loaded is None:
            continue
        if limit_per_task:
            loaded.items = stratified_sample(loaded.items, limit_per_task, seed=seed)
        if loaded.items:
            data.append(loaded)
    if not data:
        raise LmEvalExportError(
            f"nothing to export: none of the {len(tasks)} task(s) has usable items in "
            f"{', '.join(map(str, data_dirs))}"
        )
    return write_lm_eval_tasks(data, out_dir, max_tokens=max_tokens, temperature=temperature)


def write_lm_eval_tasks(
    data: Sequence[TaskData], out_dir: Path, *, max_tokens: int = 16, temperature: float = 0.0
) -> list[Path]:
    """Write loaded (and already sampled) tasks as lm-eval tasks in `out_dir`.

    Returns the task YAMLs, then the group YAMLs, in registry order. Files of an earlier export with
    other names are left alone; files with the same names are replaced.
    """
    out_dir = Path(out_dir).expanduser().resolve()  # data_files must not depend on lm-eval's cwd
    names = _task_names([d.task for d in data])
    specs = [_task_spec(d, names[d.task.key]) for d in data]  # all checked before anything is written
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    (out_dir / PREFIX).mkdir(exist_ok=True)
    for module in _VENDORED:
        (out_dir / PREFIX / f"{module}.py").write_bytes((_EVALS_DIR / f"{module}.py").read_bytes())
    (out_dir / "utils.py").write_text(UTILS_SOURCE, encoding="utf-8")

    written: list[Path] = []
    for loaded, spec in zip(data, specs, strict=True):
        jsonl = out_dir / "data" / f"{spec.name}.jsonl"
        jsonl.write_text(
            "".join(
                json.dumps({"id": item.item_id, "text": item.text, "gold": item.gold}, ensure_ascii=False)
                + "\n"
                for item in loaded.items
            ),
            encoding="utf-8",
        )
        path = out_dir / f"{spec.name}.yaml"
        _write_yaml(path, _task_yaml(spec, jsonl, max_tokens=max_tokens, temperature=temperature))
        written.append(path)

    groups: dict[str, list[str]] = {}
    for loaded, spec in zip(data, specs, strict=True):
        groups.setdefault(loaded.task.culture, []).append(spec.name)
    group_names: list[str] = []
    for culture, members in groups.items():
        group = f"{PREFIX}_{_slug(culture)}"
        if group in names.values():
            raise LmEvalExportError(f"group name {group} of culture {culture!r} is also a task name")
        path = out_dir / f"{group}.yaml"
        _write_yaml(path, _group_yaml(group, members))
        written.append(path)
        group_names.append(group)
    (out_dir / "README.md").write_text(_readme(out_dir, group_names), encoding="utf-8")
    return written


@dataclass(frozen=True)
class _TaskSpec:
    name: str
    task: Task
    description: str  # lm-eval Jinja template rendering the system message
    doc_to_text: str  # lm-eval Jinja template rendering the user message from {{text}}
    items: int


def _task_spec(data: TaskData, name: str) -> _TaskSpec:
    """The task's templates, checked item by item against evaluate's messages."""
    task = data.task
    marker = "\x00cultureforge-text\x00"  # nothing a template or a registry writes, so it is found once
    system, user = _system_and_user(render_classification(task, marker), task)
    before, sep, after = user.partition(marker)
    if not sep or marker in after:
        raise LmEvalExportError(
            f"{task.key}: the user message of {prompts.CLASSIFY} does not hold the text once"
        )
    description = _literal(system, task)
    doc_to_text = _literal(before, task) + "{{ text }}" + _literal(after, task)
    system_template = _LM_EVAL_JINJA.from_string(description)
    user_template = _LM_EVAL_JINJA.from_string(doc_to_text)
    for item in data.items:
        want_system, want_user = _system_and_user(render_classification(task, item.text), task)
        doc = {"id": item.item_id, "text": item.text, "gold": item.gold}
        if system_template.render(**doc) != want_system or user_template.render(**doc) != want_user:
            raise LmEvalExportError(
                f"{task.key}: item {item.item_id}: lm-eval would not render evaluate's prompt for it"
            )
    return _TaskSpec(name, task, description, doc_to_text, len(data.items))


def _system_and_user(messages: list[prompts.Message], task: Task) -> tuple[str, str]:
    roles = [m["role"] for m in messages]
    if roles != ["system", "user"]:
        raise LmEvalExportError(f"{task.key}: expected a system and a user message, got {roles}")
    return messages[0]["content"], messages[1]["content"]


def _literal(text: str, task: Task) -> str:
    """`text` as a Jinja template that renders to itself."""
    if not any(mark in text for mark in _JINJA_MARKS):
        return text
    if "{% endraw" in text or "{%- endraw" in text:
        raise LmEvalExportError(f"{task.key}: the prompt holds a Jinja 'endraw' and cannot be escaped")
    return "{% raw %}" + text + "{% endraw %}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.casefold()).strip("_") or "x"


def _task_names(tasks: Sequence[Task]) -> dict[str, str]:
    """Task.key -> lm-eval task name; two keys that fold to one name are an error, not a silent merge."""
    names: dict[str, str] = {}
    owner: dict[str, str] = {}
    for task in tasks:
        name = f"{PREFIX}_{_slug(task.culture)}_{_slug(task.name)}"
        if name in owner:
            raise LmEvalExportError(f"tasks {owner[name]} and {task.key} would both be lm-eval task {name}")
        owner[name] = task.key
        names[task.key] = name
    return names


def _task_yaml(spec: _TaskSpec, jsonl: Path, *, max_tokens: int, temperature: float) -> dict:
    labels = list(spec.task.labels)
    meanings = {label: spec.task.meanings.get(label, label) for label in labels}
    return {
        "task": spec.name,
        "tag": [PREFIX],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(jsonl)}},
        "test_split": "test",
        "output_type": "generate_until",
        "description": spec.description,
        "doc_to_text": spec.doc_to_text,
        "doc_to_target": "gold",
        "num_fewshot": 0,
        # evaluate sends no stop sequence: the answer ends at max_tokens or the end of the turn.
        "generation_kwargs": {
            "until": [],
            "max_gen_toks": max_tokens,
            "temperature": float(temperature),
            "do_sample": temperature > 0,
        },
        "filter_list": [
            {
                "name": FILTER_NAME,
                "filter": [
                    {"function": _FunctionRef("utils.LabelFilter"), "labels": labels, "meanings": meanings}
                ],
            }
        ],
        "metric_list": [
            {
                "metric": _FunctionRef(f"utils.{metric}"),
                "aggregation": _FunctionRef(f"utils.{metric}_aggregate"),
                "higher_is_better": higher_is_better,
                "labels": labels,
            }
            for metric, higher_is_better in METRICS.items()
        ],
        "metadata": {
            "version": 1.0,
            "cultureforge_task": spec.task.key,
            "prompt": prompts.CLASSIFY,
            "prompt_sha256": prompts.template(prompts.CLASSIFY).sha256,
            "items": spec.items,
        },
    }


def _group_yaml(group: str, members: Sequence[str]) -> dict:
    # A culture's score is the unweighted mean of its tasks' scores, as in evals.metrics.culture_means.
    return {
        "group": group,
        "task": list(members),
        "aggregate_metric_list": [
            {"metric": metric, "aggregation": "mean", "weight_by_size": False, "filter_list": [FILTER_NAME]}
            for metric in METRICS
        ],
        "metadata": {"version": 1.0},
    }


def _write_yaml(path: Path, document: dict) -> None:
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000)
    # PyYAML quotes every explicitly tagged scalar; lm-eval's own files write `!function utils.name`.
    path.write_text(re.sub(r"!function '([\w.]+)'", r"!function \1", text), encoding="utf-8")


def _readme(out_dir: Path, groups: Sequence[str]) -> str:
    return f"""# culture-forge tasks for lm-evaluation-harness 0.4

Written by `python cli.py evaluate --export-lm-eval`. Groups (one per culture): {", ".join(groups)}.

    lm_eval --include_path {out_dir} --tasks {",".join(groups)} --apply_chat_template \\
        --model local-chat-completions --model_args model=NAME,base_url=http://HOST/v1/chat/completions

or `--model vllm` / `--model hf --model_args pretrained=BASE,peft=ADAPTER` with `--apply_chat_template`.

Scores: `macro_f1` over each task's label set (an unreadable answer is wrong), `accuracy`,
`invalid_rate`, under the filter `{FILTER_NAME}`; a group is the unweighted mean of its tasks. The
answer parser and the metrics are copies of culture-forge's (`cultureforge/`), so the same answers
give `python cli.py evaluate`'s numbers.

Where lm-eval differs from `evaluate`:
- With `--apply_chat_template` the messages are evaluate's: the culture's system prompt (the task's
  `description`), then the classify_v1 user message. Without it, lm-eval glues the system prompt and
  the user message into one plain text, with nothing between them. `--system_instruction` is put in
  front of the culture's system prompt.
- The items are fixed at export time (the sample of `--limit-per-task`, stratified by label); lm-eval's
  `--limit` keeps the first N of them in file order instead.
- One answer per item: evaluate's `--samples K` (the mean of K sampled runs) has no counterpart.
- The data files are named by absolute paths: export again after moving this folder.
"""


# Written as DIR/utils.py. It runs inside lm-eval, where culture-forge may not be installed: it loads
# the copies of evals/parsing.py and evals/metrics.py that the export puts in DIR/cultureforge/.
UTILS_SOURCE = '''"""culture-forge scoring for lm-evaluation-harness: evaluate's answer parser and metrics.

Written by `python cli.py evaluate --export-lm-eval`; `cultureforge/parsing.py` and `metrics.py`
beside this file are copies of culture-forge's evals/parsing.py and evals/metrics.py.
"""

import hashlib
import importlib.util
import sys
from pathlib import Path

from lm_eval.api.filter import Filter

_HERE = Path(__file__).resolve().parent
INVALID = ""  # what an unreadable answer becomes; no label is empty, so it is never a class


def _load(name):
    # One module per export folder: two exports loaded in one process keep their own copies.
    tag = hashlib.sha256(str(_HERE).encode()).hexdigest()[:12]
    module_name = f"_cultureforge_{tag}_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, _HERE / "cultureforge" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    return sys.modules[module_name]


_parsing = _load("parsing")
_metrics = _load("metrics")


class LabelFilter(Filter):
    """Each item's first answer as one of the task's labels (evals.parsing.parse_label), or INVALID."""

    def __init__(self, labels, meanings, **kwargs):
        super().__init__(**kwargs)
        self.labels = tuple(labels)
        self.meanings = dict(meanings)

    def apply(self, resps, docs):
        return [self.parse(answers[0] if answers else "") for answers in resps]

    def parse(self, answer):
        label = _parsing.parse_label(answer if isinstance(answer, str) else "", self.labels, self.meanings)
        return INVALID if label is None else label


# lm-eval calls a metric once per item with references=[gold], predictions=[label] and the YAML's
# keyword arguments; the item keeps what the aggregation needs, which sees only the list of items.
def macro_f1(references, predictions, labels):
    return references[0], predictions[0], tuple(labels)


def accuracy(references, predictions, labels):
    return references[0], predictions[0], tuple(labels)


def invalid_rate(references, predictions, labels):
    return references[0], predictions[0], tuple(labels)


def _columns(items):
    gold = [item[0] for item in items]
    pred = [None if item[1] == INVALID else item[1] for item in items]
    return gold, pred, list(items[0][2])


def macro_f1_aggregate(items):
    gold, pred, labels = _columns(items)
    return _metrics.macro_f1(gold, pred, labels)


def accuracy_aggregate(items):
    gold, pred, _ = _columns(items)
    return _metrics.accuracy(gold, pred)


def invalid_rate_aggregate(items):
    _, pred, _ = _columns(items)
    return _metrics.invalid_rate(pred)
'''
