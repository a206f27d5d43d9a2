"""Writing examples in the shapes trainers and fine-tuning providers take.

- `openai`: chat fine-tuning JSONL, `{"messages": [system, user, assistant]}` and nothing else, since
  the provider's validator rejects unknown keys.
- `sharegpt`: `{"conversations": [{"from": "system"|"human"|"gpt", "value": ...}]}` (FastChat, Axolotl,
  LLaMA-Factory).
- `alpaca`: `{"instruction", "input", "output", "system"}` (LLaMA-Factory's alpaca with a system column).
- `hf`: a `datasets.DatasetDict` saved with `save_to_disk` at the top of the output directory, so that
  `load_from_disk(DIR)` opens it; its `messages` column is what TRL's SFTTrainer takes, and the other
  columns keep each example's culture, question, source and label.

JSONL formats write `train.jsonl` and, when the split holds any, `validation.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from builders.examples import Example, Split

Format = Literal["openai", "sharegpt", "alpaca", "hf"]
FORMATS: tuple[str, ...] = get_args(Format)
SPLITS: tuple[Split, ...] = ("train", "validation")

_SHAREGPT_SPEAKER = {"system": "system", "user": "human", "assistant": "gpt"}


def openai_record(example: Example) -> dict[str, Any]:
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in example.messages]}


def sharegpt_record(example: Example) -> dict[str, Any]:
    return {
        "conversations": [
            {"from": _SHAREGPT_SPEAKER[m["role"]], "value": m["content"]} for m in example.messages
        ]
    }


def alpaca_record(example: Example) -> dict[str, Any]:
    return {"instruction": example.user, "input": "", "output": example.assistant, "system": example.system}


def hf_record(example: Example) -> dict[str, Any]:
    return {
        **openai_record(example),
        "culture": example.culture,
        "q_id": example.q_id,
        "source": example.source,
        "label": example.label,
    }


RECORDS: dict[str, Callable[[Example], dict[str, Any]]] = {
    "openai": openai_record,
    "sharegpt": sharegpt_record,
    "alpaca": alpaca_record,
}


def by_split(examples: Sequence[Example]) -> dict[Split, list[Example]]:
    """The non-empty splits, train first, each in the examples' own order."""
    grouped = {split: [example for example in examples if example.split == split] for split in SPLITS}
    return {split: found for split, found in grouped.items() if found}


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_hf(examples: Sequence[Example], directory: Path) -> list[str]:
    # Imported here: `datasets` takes seconds to import and only this format needs it.
    from datasets import Dataset, DatasetDict

    splits = by_split(examples)
    DatasetDict(
        {
            split: Dataset.from_list([hf_record(example) for example in found])
            for split, found in splits.items()
        }
    ).save_to_disk(str(directory))
    return ["dataset_dict.json", *(f"{split}/" for split in splits)]


def write_examples(examples: Sequence[Example], fmt: Format, directory: Path) -> list[str]:
    """Write the examples into `directory`; returns the names of what was written."""
    if fmt == "hf":
        return write_hf(examples, directory)
    record = RECORDS[fmt]
    written = []
    for split, found in by_split(examples).items():
        write_jsonl(directory / f"{split}.jsonl", [record(example) for example in found])
        written.append(f"{split}.jsonl")
    return written
