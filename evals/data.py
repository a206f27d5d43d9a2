"""Reading a task's JSONL file into evaluation items, whatever state the file is in.

The published files are untidy, and every oddity is either repaired in a stated way or skipped and
counted, never dropped silently:

- the text sits in the task's `text_field`, else in `data`, `tweet` or `comment`; a text that is a
  number (a spreadsheet turned "1" into 1.0) becomes its string ("1");
- labels come as strings or numbers in many vocabularies; they are stripped, numbers lose a ".0", and
  they match the task's label set without case, taking the registry's spelling;
- a row whose label is missing, null or empty is unlabelled; a label outside the set is counted per
  value; an empty text is counted; each skipped row is counted once, under the first of: broken line,
  unlabelled, unknown label, empty text;
- a text longer than `max_chars` is cut at a word boundary (hard cut for scripts without spaces) and
  the item is flagged;
- a line that is not JSON, or not an object with a text, is recorded as "file:line: why" and the rest of
  the file still loads;
- the same text twice in one file with different labels is kept twice (the file is the gold
  standard, and choosing would bias it) and counted in `conflicting`. Different files sharing texts
  with different labels are different tasks, so nothing is counted across files.

`item_id` is the row's `id`, else the line number; an id seen before in the file gets "@line<n>"
appended so that (task, item_id) stays unique for predictions and resume.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evals.tasks import Task

TEXT_FIELDS = ("data", "tweet", "comment")


@dataclass(frozen=True)
class EvalItem:
    task: str  # Task.key
    item_id: str
    text: str
    gold: str  # spelled as in the task's label set
    truncated: bool


@dataclass
class TaskData:
    task: Task
    path: Path
    items: list[EvalItem]
    unlabelled: int = 0
    empty_texts: int = 0
    truncated: int = 0
    broken_lines: list[str] = field(default_factory=list)  # "file:line: why"
    unknown_labels: dict[str, int] = field(default_factory=dict)  # normalised value -> rows
    conflicting: int = 0  # distinct texts that carry more than one gold label
    duplicate_ids: int = 0  # rows whose `id` repeated an earlier one (renamed, kept)

    def notes(self) -> list[str]:
        """One line per thing a user should know about this file; empty for a clean file."""
        key, lines = self.task.key, []
        if self.broken_lines:
            shown = "; ".join(self.broken_lines[:3])
            more = f" (+{len(self.broken_lines) - 3} more)" if len(self.broken_lines) > 3 else ""
            lines.append(f"{key}: {len(self.broken_lines)} broken line(s) skipped: {shown}{more}")
        if self.unlabelled:
            lines.append(f"{key}: {self.unlabelled} unlabelled row(s) skipped")
        if self.unknown_labels:
            values = ", ".join(f"{value!r} x{count}" for value, count in self.unknown_labels.items())
            lines.append(f"{key}: rows with labels outside {' '.join(self.task.labels)} skipped: {values}")
        if self.empty_texts:
            lines.append(f"{key}: {self.empty_texts} row(s) with an empty text skipped")
        if self.truncated:
            lines.append(f"{key}: {self.truncated} text(s) cut to the character budget")
        if self.conflicting:
            lines.append(f"{key}: {self.conflicting} text(s) appear with different labels (all kept)")
        if self.duplicate_ids:
            lines.append(f"{key}: {self.duplicate_ids} repeated id(s) renamed with '@line<n>'")
        return lines


def find_task_file(task: Task, data_dirs: Sequence[Path]) -> Path | None:
    """The task's file in the first of `data_dirs` that has it."""
    for directory in data_dirs:
        candidate = Path(directory).expanduser() / task.path
        if candidate.is_file():
            return candidate
    return None


def load_task(task: Task, data_dirs: Sequence[Path], *, max_chars: int = 2000) -> TaskData | None:
    """The task's items, or None when no data folder has its file."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    path = find_task_file(task, data_dirs)
    if path is None:
        return None
    data = TaskData(task=task, path=path, items=[])
    try:
        raw = path.read_bytes()
    except OSError as exc:
        data.broken_lines.append(f"{path}: cannot be read ({exc.strerror})")
        return data
    labels_by_fold = {label.casefold(): label for label in task.labels}
    fields = (task.text_field, *(name for name in TEXT_FIELDS if name != task.text_field))
    golds_by_text: dict[str, set[str]] = defaultdict(set)
    ids_seen: set[str] = set()
    unknown: Counter[str] = Counter()
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        row, why = _decode(line, first=number == 1)
        if row is None:
            data.broken_lines.append(f"{path}:{number}: {why}")
            continue
        text, why = _text_of(row, fields)
        if why:
            data.broken_lines.append(f"{path}:{number}: {why}")
            continue
        label = normalise_value(row.get("label"))
        if label is None:
            data.unlabelled += 1
            continue
        gold = labels_by_fold.get(label.casefold())
        if gold is None:
            unknown[label] += 1
            continue
        if not text:
            data.empty_texts += 1
            continue
        golds_by_text[text].add(gold)
        item_id = normalise_value(row.get("id")) or str(number)
        if item_id in ids_seen:
            item_id = f"{item_id}@line{number}"
            data.duplicate_ids += 1
        ids_seen.add(item_id)
        cut = cut_text(text, max_chars)
        data.truncated += cut != text
        data.items.append(EvalItem(task.key, item_id, cut, gold, cut != text))
    data.unknown_labels = dict(unknown.most_common())
    data.conflicting = sum(1 for golds in golds_by_text.values() if len(golds) > 1)
    return data


def load_tasks(
    tasks: Sequence[Task], data_dirs: Sequence[Path], *, max_chars: int = 2000
) -> tuple[list[TaskData], list[Task]]:
    """(the tasks whose file was found, loaded; the tasks whose file no folder has)."""
    loaded: list[TaskData] = []
    missing: list[Task] = []
    for task in tasks:
        data = load_task(task, data_dirs, max_chars=max_chars)
        if data is None:
            missing.append(task)
        else:
            loaded.append(data)
    return loaded, missing


def normalise_value(value: object) -> str | None:
    """A label or id as a string: stripped, integral numbers without ".0"; None when there is none."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return None  # pandas writes a missing cell as NaN, which Python's json accepts
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text  # "1.0" and "1" are one label


def cut_text(text: str, max_chars: int) -> str:
    """`text` within `max_chars`, cut at the last space in the second half of the budget if there is one."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if space >= max_chars // 2 and not text[max_chars].isspace():
        head = head[:space]
    return head.rstrip()


def stratified_sample(items: Sequence[EvalItem], n: int, *, seed: int = 0) -> list[EvalItem]:
    """`n` items with each gold label in proportion to its share, in file order.

    Quotas are the proportional shares rounded by largest remainder; when `n` is at least the number of
    labels, a label whose quota rounds to zero takes one place from the largest quota, so rare classes
    (which macro-F1 weighs like the others) are never absent. Which items fill a label's quota depends
    only on the seed, that label and its items, so every model sees the same sample.
    """
    if n < 0:
        raise ValueError(f"sample size must not be negative, got {n}")
    if n >= len(items):
        return list(items)
    positions: dict[str, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        positions[item.gold].append(position)
    quotas = _quotas({label: len(found) for label, found in positions.items()}, n)
    chosen: list[int] = []
    for label, quota in quotas.items():
        rng = random.Random(f"{seed}:{label}")
        chosen.extend(rng.sample(positions[label], quota))
    return [items[position] for position in sorted(chosen)]


def _quotas(sizes: dict[str, int], n: int) -> dict[str, int]:
    total = sum(sizes.values())
    shares = {label: n * size / total for label, size in sizes.items()}
    quotas = {label: math.floor(share) for label, share in shares.items()}
    # Ties in the remainder go to the larger class, then to the label seen first in the file.
    order = sorted(sizes, key=lambda label: (-(shares[label] - quotas[label]), -sizes[label]))
    for label in order[: n - sum(quotas.values())]:
        quotas[label] += 1
    if n >= len(sizes):
        for label in [label for label, quota in quotas.items() if quota == 0]:
            donor = max(quotas, key=lambda other: quotas[other])
            quotas[donor] -= 1
            quotas[label] = 1
    return quotas


def _decode(line: bytes, *, first: bool) -> tuple[dict | None, str]:
    try:
        text = line.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    try:
        row = json.loads(text)
    except json.JSONDecodeError:
        return None, "not valid JSON"
    if not isinstance(row, dict):
        return None, f"not a JSON object (a {type(row).__name__})"
    return row, ""


def _text_of(row: dict, fields: Sequence[str]) -> tuple[str, str]:
    """(the stripped text, "") or ("", why the row is broken); ("", "") is an empty text.

    The first of `fields` with a non-empty value wins, so a null `data` beside a filled `tweet` is
    not mistaken for an empty text.
    """
    present = [name for name in fields if name in row]
    if not present:
        return "", f"no text field (looked for {', '.join(fields)})"
    why = ""
    for name in present:
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, (str, int, float, type(None))):
            why = why or f"{name} is a {type(value).__name__}, not a text"
            continue
        text = value.strip() if isinstance(value, str) else normalise_value(value) or ""
        if text:
            return text, ""
    return "", why
