"""Reading seed files: JSONL with `q_id`, `q_content`, optional `topic` and `option`."""

from __future__ import annotations

from pathlib import Path

from storage.jsonl import read_jsonl_records
from storage.records import Seed

DEFAULT_SEEDS = Path(__file__).resolve().parent.parent / "data" / "wvs" / "seeds.jsonl"


class SeedFileError(ValueError):
    """A seed file that cannot be used; the message names the file and line."""


def load_seeds(path: Path) -> list[Seed]:
    seeds: list[Seed] = []
    seen: dict[str, int] = {}
    for number, seed in read_jsonl_records(path, Seed, kind="seed file", error=SeedFileError):
        if seed.q_id in seen:
            raise SeedFileError(f"{path}:{number}: q_id '{seed.q_id}' already used on line {seen[seed.q_id]}")
        seen[seed.q_id] = number
        seeds.append(seed)
    if not seeds:
        raise SeedFileError(f"seed file {path} holds no seeds")
    return seeds
