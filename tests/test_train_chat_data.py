"""Chat data loading, assistant-only labels, and training/inference prompt identity."""

from __future__ import annotations

import json

import pytest

from tests.train_helpers import (
    conversations,
    multi_turn,
    smollm2_model_dir,
    tiny_tokenizer,
    write_dataset_dir,
    write_jsonl,
)
from trainers.chat_data import (
    IGNORE_INDEX,
    ChatCollator,
    TemplateError,
    encode_conversation,
    encode_conversations,
    load_chat_data,
    prompt_ids,
    read_chat_jsonl,
)
from trainers.config import UserError


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def labelled_text(tokenizer, enc) -> str:
    return tokenizer.decode([t for t in enc.labels if t != IGNORE_INDEX])


def test_reads_a_jsonl_file_and_a_build_dataset_directory(tmp_path):
    single = write_jsonl(tmp_path / "chat.jsonl", conversations(3))
    directory = write_dataset_dir(tmp_path / "ds", n_train=5, n_val=2)

    from_file = load_chat_data(single)
    from_dir = load_chat_data(directory)

    assert len(from_file.train) == 3 and from_file.validation is None
    assert len(from_dir.train) == 5 and len(from_dir.validation) == 2
    assert from_dir.validation_source.endswith("validation.jsonl")


def test_reads_a_saved_hf_dataset_with_a_messages_column(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = conversations(6)
    DatasetDict(
        {"train": Dataset.from_list(rows[:4]), "validation": Dataset.from_list(rows[4:])}
    ).save_to_disk(str(tmp_path / "hf"))

    splits = load_chat_data(tmp_path / "hf")

    assert len(splits.train) == 4 and len(splits.validation) == 2
    assert splits.train[0][2] == {"role": "assistant", "content": rows[0]["messages"][2]["content"]}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"text": "hi"}', "expected an object with a 'messages' list"),
        ('{"messages": []}', "must be a non-empty list"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "role 'bot'"),
        ('{"messages": [{"role": "user", "content": 3}]}', "content must be a string"),
        ('{"messages": [{"role": "user", "content": "q"}]}', "no assistant message"),
        ('{"messages": [{"role": "assistant", "content": "a"}]}', "must follow a user message"),
        (
            '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]}',
            "weight must be 0 or 1",
        ),
    ],
)
def test_bad_records_are_refused_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(conversations(1)[0]) + "\n\n" + line + "\n")
    with pytest.raises(UserError, match=message) as err:
        read_chat_jsonl(path)
    assert f"{path}:3" in str(err.value)


def test_missing_data_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_chat_data(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither train.jsonl nor a saved HF dataset"):
        load_chat_data(tmp_path / "empty")


def test_only_assistant_replies_and_their_end_marker_carry_labels(tokenizer):
    messages = conversations(1)[0]["messages"]

    enc = encode_conversation(tokenizer, messages, max_length=512)

    assert len(enc.input_ids) == len(enc.labels)
    assert labelled_text(tokenizer, enc) == "Option 1. Very important.<|im_end|>\n"
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(enc.input_ids) == full


def test_every_assistant_turn_is_trained_unless_weight_zero(tokenizer):
    messages = multi_turn()["messages"]
    both = encode_conversation(tokenizer, messages, 512)
    messages[2]["weight"] = 0
    last_only = encode_conversation(tokenizer, messages, 512)

    assert labelled_text(tokenizer, both) == (
        "Option 1. Very important.<|im_end|>\nOption 2. Rather important.<|im_end|>\n"
    )
    assert labelled_text(tokenizer, last_only) == "Option 2. Rather important.<|im_end|>\n"


def test_training_prompt_tokens_equal_the_inference_prompt_tokens(tokenizer):
    """What generation feeds the model is exactly the token prefix it was trained to continue."""
    messages = multi_turn()["messages"]
    enc = encode_conversation(tokenizer, messages, 512)
    starts = [
        i
        for i, t in enumerate(enc.labels)
        if t != IGNORE_INDEX and (i == 0 or enc.labels[i - 1] == IGNORE_INDEX)
    ]

    for turn, start in zip((2, 4), starts, strict=True):
        prompt = prompt_ids(tokenizer, messages[:turn])
        assert enc.input_ids[:start] == prompt
        assert (
            prompt == tokenizer.apply_chat_template(messages[:turn], add_generation_prompt=True)["input_ids"]
        )
    assert enc.prompt_mismatches == 0


def test_truncation_keeps_the_prefix_and_drops_examples_without_reply_tokens(tokenizer):
    rows = [conversations(1)[0]["messages"]] * 2
    prompt_len = len(prompt_ids(tokenizer, rows[0][:2]))

    kept, stats = encode_conversations(tokenizer, rows, max_length=prompt_len + 2)
    assert stats.truncated == 2 and stats.examples == 2
    assert all(len(r["input_ids"]) == prompt_len + 2 for r in kept)

    with pytest.raises(UserError, match="raise it"):
        encode_conversations(tokenizer, rows, max_length=prompt_len)


def test_a_tokenizer_without_chat_template_is_refused():
    with pytest.raises(TemplateError, match="no chat template"):
        encode_conversation(tiny_tokenizer(chat_template=None), conversations(1)[0]["messages"], 64)


def test_collator_pads_right_with_ignored_labels():
    batch = ChatCollator(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.slow  # converts the packaged GGUF on first use (about a minute on two cores)
@pytest.mark.integration
def test_smollm2_template_tokenizes_training_and_inference_prompts_identically():
    """The same check with the embedded base model's own chat template and tokenizer."""
    from trainers.local_model import ModelSource, load_tokenizer

    tok = load_tokenizer(ModelSource(str(smollm2_model_dir())))
    for row in conversations(4) + [multi_turn()]:
        messages = row["messages"]
        enc = encode_conversation(tok, messages, 1024)
        assert enc.prompt_mismatches == 0
        first_label = next(i for i, t in enumerate(enc.labels) if t != IGNORE_INDEX)
        first_turn = [m["role"] for m in messages].index("assistant")
        assert enc.input_ids[:first_label] == prompt_ids(tok, messages[:first_turn])
        assert tok.decode(enc.input_ids[first_label:]).startswith(messages[first_turn]["content"])
