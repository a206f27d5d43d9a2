"""Chat data in, token ids and assistant-only labels out.

The conversation is rendered with the base model's own chat template, then cut at the places where
each assistant reply starts and ends; only reply tokens (and the template's end-of-turn marker after
them) get labels, so the model is never trained to write the user's or the system's words. Each
piece is tokenized on its own, which keeps the prompt part of a training example token-for-token
equal to what `prompt_ids` feeds the model at inference time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trainers.config import UserError

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100

Message = dict[str, Any]
Conversation = list[Message]


class TemplateError(UserError):
    """The tokenizer's chat template cannot be used to locate assistant replies."""


@dataclass
class ChatSplits:
    train: list[Conversation]
    validation: list[Conversation] | None
    train_source: str
    validation_source: str | None = None


def check_conversation(messages: Any, where: str) -> Conversation:
    """Validate one {'messages': [...]} record; `where` (file:line) goes into the error."""
    if not isinstance(messages, list) or not messages:
        raise UserError(f"{where}: 'messages' must be a non-empty list")
    clean: Conversation = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise UserError(f"{where}: message {i} is {type(msg).__name__}, expected an object")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise UserError(f"{where}: message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise UserError(f"{where}: message {i} content must be a string, got {type(content).__name__}")
        item: Message = {"role": role, "content": content}
        if role == "assistant" and "weight" in msg:
            # OpenAI's chat format lets a dataset exclude an assistant turn from training with weight 0.
            if msg["weight"] not in (0, 1):
                raise UserError(f"{where}: message {i} weight must be 0 or 1, got {msg['weight']!r}")
            item["weight"] = msg["weight"]
        clean.append(item)
    roles = [m["role"] for m in clean]
    if "assistant" not in roles:
        raise UserError(f"{where}: no assistant message to learn from")
    if "user" not in roles[: roles.index("assistant")]:
        raise UserError(f"{where}: the first assistant message must follow a user message")
    return clean


def read_chat_jsonl(path: Path) -> list[Conversation]:
    if not path.is_file():
        raise UserError(f"chat data file {str(path)!r} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict) or "messages" not in record:
                raise UserError(f"{where}: expected an object with a 'messages' list")
            conversations.append(check_conversation(record["messages"], where))
    if not conversations:
        raise UserError(f"chat data file {str(path)!r} holds no conversations")
    return conversations


def _read_saved_dataset(directory: Path) -> tuple[list[Conversation], list[Conversation] | None]:
    from datasets import Dataset, load_from_disk

    loaded = load_from_disk(str(directory))
    splits = {"train": loaded} if isinstance(loaded, Dataset) else dict(loaded)
    if "train" not in splits:
        raise UserError(f"saved dataset {str(directory)!r} has no 'train' split (has {sorted(splits)})")

    def convert(name: str) -> list[Conversation]:
        split = splits[name]
        if "messages" not in split.column_names:
            raise UserError(f"saved dataset {str(directory)!r} split {name!r} has no 'messages' column")
        return [check_conversation(m, f"{directory}[{name}][{i}]") for i, m in enumerate(split["messages"])]

    validation = next((convert(n) for n in ("validation", "valid", "test") if n in splits), None)
    return convert("train"), validation


DataLayout = Literal["jsonl", "jsonl-dir", "saved-dataset"]


def data_layout(data: Path) -> DataLayout:
    """What kind of chat data --data names, judged from its files alone (a dry run reads no more)."""
    if data.is_file():
        return "jsonl"
    if data.is_dir():
        if (data / "train.jsonl").is_file():
            return "jsonl-dir"
        if (data / "dataset_dict.json").is_file() or (data / "state.json").is_file():
            return "saved-dataset"
        raise UserError(f"data directory {str(data)!r} has neither train.jsonl nor a saved HF dataset")
    raise UserError(f"--data {str(data)!r} does not exist")


def load_chat_data(data: Path, validation_data: Path | None = None) -> ChatSplits:
    """Read --data (file or build-dataset directory) and an optional explicit validation file."""
    layout = data_layout(data)
    if layout == "jsonl-dir":
        splits = ChatSplits(read_chat_jsonl(data / "train.jsonl"), None, str(data / "train.jsonl"))
        if (data / "validation.jsonl").is_file():
            splits.validation = read_chat_jsonl(data / "validation.jsonl")
            splits.validation_source = str(data / "validation.jsonl")
    elif layout == "saved-dataset":
        train, validation = _read_saved_dataset(data)
        splits = ChatSplits(train, validation, str(data), str(data) if validation else None)
    else:
        splits = ChatSplits(read_chat_jsonl(data), None, str(data))
    if validation_data is not None:
        splits.validation = read_chat_jsonl(validation_data)
        splits.validation_source = str(validation_data)
    return splits


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer, messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt)


def _ids(tokenizer, text: str) -> list[int]:
    # The template already wrote any BOS/special tokens into the text; adding them again would double them.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer, messages: Sequence[Message]) -> list[int]:
    """Token ids of the prompt that asks the model for the next assistant reply (inference side)."""
    if messages and messages[-1]["role"] == "assistant":
        raise ValueError("prompt_ids wants the conversation up to (not including) the reply to generate")
    return _ids(tokenizer, render(tokenizer, messages, add_generation_prompt=True))


@dataclass
class EncodedChat:
    input_ids: list[int]
    labels: list[int]
    # Assistant turns whose training prefix differs from prompt_ids() of the same history.
    prompt_mismatches: int = 0
    truncated: bool = False


def encode_conversation(tokenizer, messages: Conversation, max_length: int) -> EncodedChat:
    if not has_chat_template(tokenizer):
        raise TemplateError("the tokenizer has no chat template; pick a chat/instruct base model")
    full = render(tokenizer, messages)
    pieces: list[tuple[str, bool]] = []
    turn_starts: list[int] = []
    cursor = 0
    for k, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:k], add_generation_prompt=True)
        through = render(tokenizer, messages[: k + 1])
        if not (full.startswith(before) and full.startswith(through) and len(before) <= len(through)):
            raise TemplateError(
                "the chat template does not render a conversation's beginning as a prefix of the whole "
                f"conversation (at assistant message {k}), so reply tokens cannot be located"
            )
        pieces.append((full[cursor : len(before)], False))
        turn_starts.append(len(pieces))
        pieces.append((full[len(before) : len(through)], msg.get("weight", 1) != 0))
        cursor = len(through)
    pieces.append((full[cursor:], False))

    input_ids: list[int] = []
    labels: list[int] = []
    piece_offsets = []
    for text, trainable in pieces:
        piece_offsets.append(len(input_ids))
        ids = _ids(tokenizer, text) if text else []
        input_ids.extend(ids)
        labels.extend(ids if trainable else [IGNORE_INDEX] * len(ids))

    mismatches = 0
    assistant_positions = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    for k, piece_index in zip(assistant_positions, turn_starts, strict=True):
        if prompt_ids(tokenizer, messages[:k]) != input_ids[: piece_offsets[piece_index]]:
            mismatches += 1

    truncated = len(input_ids) > max_length
    return EncodedChat(input_ids[:max_length], labels[:max_length], mismatches, truncated)


@dataclass
class EncodeStats:
    examples: int = 0
    dropped_no_labels: int = 0
    truncated: int = 0
    prompt_mismatches: int = 0
    tokens: int = 0
    label_tokens: int = 0


def encode_conversations(
    tokenizer, conversations: Sequence[Conversation], max_length: int
) -> tuple[list[dict[str, list[int]]], EncodeStats]:
    stats = EncodeStats()
    rows = []
    for messages in conversations:
        enc = encode_conversation(tokenizer, messages, max_length)
        stats.truncated += enc.truncated
        stats.prompt_mismatches += enc.prompt_mismatches
        n_labels = sum(1 for t in enc.labels if t != IGNORE_INDEX)
        if n_labels == 0:
            # Truncation ate every reply token: the example would add a zero-loss step and nothing else.
            stats.dropped_no_labels += 1
            continue
        rows.append({"input_ids": enc.input_ids, "labels": enc.labels})
        stats.examples += 1
        stats.tokens += len(enc.input_ids)
        stats.label_tokens += n_labels
    if not rows:
        raise UserError(f"no example kept an assistant token within --max-seq-length {max_length}; raise it")
    return rows, stats


@dataclass
class ChatCollator:
    """Right-pads a batch; padding gets label -100 and attention 0."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
        }
