"""Reading seed files: JSONL with `q_id`, `q_content`, optional `topic` and `option`."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from storage.records import Seed

DEFAULT_SEEDS = Path(__file__).resolve().parent.parent / "data" / "wvs" / "seeds.jsonl"


class SeedFileError(ValueError):
    """A seed file that cannot be used; the message names the file and line."""


def load_seeds(path: Path) -> list[Seed]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SeedFileError(f"seed file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedFileError(f"seed file {path} cannot be read: {exc}") from None
    seeds: list[Seed] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SeedFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise SeedFileError(f"{path}:{number}: expected a JSON object, got {type(data).__name__}")
        try:
            seed = Seed.model_validate(data)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(p) for p in problem["loc"]) or "line"
            raise SeedFileError(f"{path}:{number}: field '{field}': {problem['msg'].lower()}") from None
        if seed.q_id in seen:
            raise SeedFileError(f"{path}:{number}: q_id '{seed.q_id}' already used on line {seen[seed.q_id]}")
        seen[seed.q_id] = number
        seeds.append(seed)
    if not seeds:
        raise SeedFileError(f"seed file {path} holds no seeds")
    return seeds
