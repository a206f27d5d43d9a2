"""The registry of downstream classification tasks (`data/downstream/tasks.tsv`).

One tab-separated row per task, with a header naming the columns:

    culture  task  path  rows  text_field  labels  meaning  [in_shared]

`path` is relative to a data folder in the upstream CultureLLM layout, `labels` is the label set
separated by spaces (an empty label, as in `" HS NOT_HS"`, is not a class: rows carrying it are
unlabelled), and `meaning` says in words what each label means. `in_shared` only records whether a
file was in the development drop; nothing reads it. A user's `--tasks-file` has the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "downstream"
DEFAULT_TASKS = DEFAULT_DATA_DIR / "tasks.tsv"
ALL_CULTURES = "all"

REQUIRED_COLUMNS = ("culture", "task", "path", "rows", "text_field", "labels", "meaning")


class TaskRegistryError(ValueError):
    """A registry file that cannot be read, or a culture or task name it does not have."""


@dataclass(frozen=True)
class Task:
    culture: str
    name: str
    path: str  # relative to a data folder in the upstream layout, always with "/"
    rows: int  # as the registry states it (0 when the column is empty); the file decides the truth
    text_field: str
    labels: tuple[str, ...]
    meanings: dict[str, str]  # label -> what it means, the label itself where the column says nothing usable
    note: str  # the raw meaning column, for prompts that want the author's own words

    @property
    def key(self) -> str:
        return f"{self.culture}/{self.name}"

    # `meanings` is a dict, which would make the generated __hash__ fail; a task is identified by its key.
    def __hash__(self) -> int:
        return hash(self.key)


def load_registry(path: Path = DEFAULT_TASKS) -> list[Task]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TaskRegistryError(f"tasks file {path} does not exist") from None
    except OSError as exc:
        raise TaskRegistryError(f"tasks file {path} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TaskRegistryError(f"{path}:{line}: not valid UTF-8") from None
    # Only line ends are removed: a leading space in the labels column is meaningful (an empty label).
    lines = [line.rstrip("\r") for line in text.split("\n")]
    header_at = next((i for i, line in enumerate(lines) if _is_content(line)), None)
    if header_at is None:
        raise TaskRegistryError(f"tasks file {path} is empty")
    columns = [name.strip().casefold() for name in lines[header_at].split("\t")]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise TaskRegistryError(
            f"{path}:{header_at + 1}: header lacks column(s) {', '.join(missing)} "
            f"(expected tab-separated: {' '.join(REQUIRED_COLUMNS)} [in_shared])"
        )
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for index in range(header_at + 1, len(lines)):
        if not _is_content(lines[index]):
            continue
        where = f"{path}:{index + 1}"
        fields = lines[index].split("\t")
        # A row may leave out trailing optional columns (in_shared), never a required one.
        needed = max(columns.index(name) for name in REQUIRED_COLUMNS) + 1
        if not needed <= len(fields) <= len(columns):
            raise TaskRegistryError(
                f"{where}: expected {len(columns)} tab-separated fields, got {len(fields)}"
            )
        fields += [""] * (len(columns) - len(fields))
        task = _parse_row(dict(zip(columns, fields, strict=True)), where)
        folded = task.key.casefold()
        if folded in seen:
            raise TaskRegistryError(f"{where}: task {task.key} is already defined on line {seen[folded]}")
        seen[folded] = index + 1
        tasks.append(task)
    if not tasks:
        raise TaskRegistryError(f"tasks file {path} has a header but no tasks")
    return tasks


def select_tasks(
    registry: Sequence[Task], cultures: Sequence[str] | None, names: Sequence[str] | None
) -> list[Task]:
    """The tasks of `cultures` (None or "all": every culture), narrowed to `names` when given.

    Both match without case. A name is a task name ("offensive_detect", which several cultures share)
    or a key ("Arabic/offensive_detect"). Registry order is kept.
    """
    known_cultures = list(dict.fromkeys(task.culture for task in registry))
    chosen = list(registry)
    wanted = [c.strip() for c in cultures or () if c.strip()]
    if wanted and not any(c.casefold() == ALL_CULTURES for c in wanted):
        by_fold = {c.casefold(): c for c in known_cultures}
        unknown = [c for c in wanted if c.casefold() not in by_fold]
        if unknown:
            raise TaskRegistryError(
                f"unknown culture {', '.join(map(repr, unknown))}; known: {', '.join(known_cultures)}"
            )
        keep = {c.casefold() for c in wanted}
        chosen = [task for task in chosen if task.culture.casefold() in keep]
    wanted_names = [n.strip() for n in names or () if n.strip()]
    if wanted_names:
        folded = {n.casefold() for n in wanted_names}
        matched = [t for t in chosen if t.name.casefold() in folded or t.key.casefold() in folded]
        found = {t.name.casefold() for t in matched} | {t.key.casefold() for t in matched}
        unknown = [n for n in wanted_names if n.casefold() not in found]
        if unknown:
            known = ", ".join(dict.fromkeys(t.key for t in chosen))
            raise TaskRegistryError(f"unknown task {', '.join(map(repr, unknown))}; known: {known}")
        chosen = matched
    return chosen


def _is_content(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith("#")


def _parse_row(row: dict[str, str], where: str) -> Task:
    culture, name, text_field = row["culture"].strip(), row["task"].strip(), row["text_field"].strip()
    for column, value in (("culture", culture), ("task", name), ("text_field", text_field)):
        if not value:
            raise TaskRegistryError(f"{where}: empty {column}")
    if culture.casefold() == ALL_CULTURES:
        raise TaskRegistryError(f"{where}: {culture!r} cannot name a culture")
    if "/" in name:
        raise TaskRegistryError(f"{where}: task name {name!r} cannot contain '/'")
    path = row["path"].strip().replace("\\", "/")
    posix = PurePosixPath(path)
    if not path or posix.is_absolute() or ".." in posix.parts or re.match(r"^[A-Za-z]:", path):
        raise TaskRegistryError(f"{where}: path {row['path']!r} must be relative to the data folder")
    rows_text = row["rows"].strip()
    if rows_text and not rows_text.isdigit():
        raise TaskRegistryError(f"{where}: rows {rows_text!r} is not a whole number")
    labels = tuple(dict.fromkeys(row["labels"].split()))
    if not labels:
        raise TaskRegistryError(f"{where}: no labels in {row['labels']!r}")
    folded = [label.casefold() for label in labels]
    if len(set(folded)) != len(folded):
        # Labels are matched without case, so two spellings of one word would be one class.
        raise TaskRegistryError(f"{where}: labels {row['labels']!r} differ only in case")
    note = row["meaning"].strip()
    return Task(
        culture=culture,
        name=name,
        path=path,
        rows=int(rows_text or 0),
        text_field=text_field,
        labels=labels,
        meanings=parse_meanings(note, labels),
        note=note,
    )


_NEGATION_ONLY = {"not", "no", "does not", "it does not", "it doesn't", "doesn't"}
_CONTAINS = re.compile(r"^(?P<subject>.*?\S)\s+contains\s+(?P<what>.+)$", re.IGNORECASE)
_PLAIN_PHRASE = re.compile(r"^[\w][\w\s'’/-]*$")


def parse_meanings(note: str, labels: Sequence[str]) -> dict[str, str]:
    """What each label means, read from a registry meaning column.

    Understood forms, freely mixed and separated by "," or ";":
    `OFF = offensive`, `OFF: offensive`, and `HS1 race` after a lead-in such as "hate speech by
    target:" (which is then kept: "hate speech by target: race"). A label is only recognised at the
    start of the column or after ",", ";" or ":", and spelled as in the labels column, so a label word
    inside a meaning ("NOT = not offensive") is not a new entry.
    A meaning that is only a negation ("NOT_HS = not", "0 = it does not") is spelled out from the one
    other meaning ("not hate speech", "the text does not contain threat"). A parenthetical closing the
    column is a remark about the task, not part of the last meaning. A label with no usable meaning
    means itself.
    """
    real = [label for label in labels if label]
    if not real or not note:
        return {label: label for label in real}
    alternatives = "|".join(re.escape(label) for label in sorted(real, key=len, reverse=True))
    entry = re.compile(rf"(?:^|(?<=[,;:]))\s*(?P<label>{alternatives})(?P<sep>\s*[=:]|\s)")
    starts = list(entry.finditer(note))
    lead_in = note[: starts[0].start()].strip() if starts else ""
    lead_in = lead_in[:-1].strip() if lead_in.endswith(":") else ""
    found: dict[str, str] = {}
    for index, match in enumerate(starts):
        label = match.group("label")
        end = starts[index + 1].start() if index + 1 < len(starts) else len(note)
        text = note[match.end() : end]
        # ";" closes an entry even when no label follows ("NOT_HS = not; empty label = unlabelled").
        text = text.split(";", 1)[0].strip().rstrip(",").strip()
        if index + 1 == len(starts):
            text = re.sub(r"\s*\([^()]*\)$", "", text).strip()
        if not match.group("sep").strip():
            # Without "=" only a plain phrase is a meaning; "NOT only (every row ...): ..." is prose.
            if not _PLAIN_PHRASE.match(text):
                continue
            if lead_in:
                text = f"{lead_in}: {text}"
        if text and label not in found:
            found[label] = text
    for label, text in list(found.items()):
        others = [meaning for other, meaning in found.items() if other != label]
        if text.casefold() in _NEGATION_ONLY and len(others) == 1:
            found[label] = _negate(others[0])
    return {label: found.get(label, label) for label in real}


def _negate(meaning: str) -> str:
    contains = _CONTAINS.match(meaning)
    if contains:
        return f"{contains['subject']} does not contain {contains['what']}"
    return f"not {meaning}"
