"""Reading JSONL files of pydantic records, with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Record = TypeVar("Record", bound=BaseModel)


def read_jsonl_records(
    path: Path, model: type[Record], *, kind: str, error: type[Exception]
) -> list[tuple[int, Record]]:
    """(line number, record) for every non-blank line; the first bad line raises `error`.

    `kind` names the file in messages ("seed file", "samples file").
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise error(f"{kind} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{kind} {path} cannot be read: {exc}") from None
    records: list[tuple[int, Record]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise error(f"{path}:{number}: expected a JSON object, got {type(data).__name__}")
        try:
            records.append((number, model.model_validate(data)))
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(part) for part in problem["loc"]) or "line"
            raise error(f"{path}:{number}: field '{field}': {problem['msg'].lower()}") from None
    return records
