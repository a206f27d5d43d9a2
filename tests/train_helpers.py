"""Hand-made chat data and a tiny randomly initialised Llama for the trainer tests.

The tiny model has its own small BPE tokenizer with a ChatML template, trained in milliseconds on the
test conversations, so multi-process tests need neither the hub nor the packaged GGUF.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

SYSTEM = "You answer survey questions as a typical respondent from Germany. Reply with the option only."

QUESTIONS = [
    ("How important is family in your life?", "1. Very important"),
    ("Is it important to respect elders?", "1. Very important"),
    ("Should men have more right to a job than women?", "3. Disagree"),
    ("How much do you trust your neighbours?", "2. Somewhat"),
    ("Is work a duty towards society?", "2. Agree"),
    ("How important is religion in your life?", "3. Not very important"),
    ("Is competition good?", "2. Agree"),
    ("How proud are you of your nationality?", "2. Quite proud"),
]

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def conversations(n: int = 16) -> list[dict]:
    rows = []
    for i in range(n):
        question, answer = QUESTIONS[i % len(QUESTIONS)]
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": f"Option {answer}."},
                ]
            }
        )
    return rows


def multi_turn() -> dict:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "How important is family in your life?"},
            {"role": "assistant", "content": "Option 1. Very important."},
            {"role": "user", "content": "And friends?"},
            {"role": "assistant", "content": "Option 2. Rather important.", "weight": 1},
        ]
    }


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_dataset_dir(directory: Path, n_train: int = 16, n_val: int = 4) -> Path:
    """The layout build-dataset writes: train.jsonl and validation.jsonl."""
    rows = conversations(n_train + n_val)
    write_jsonl(directory / "train.jsonl", rows[:n_train])
    write_jsonl(directory / "validation.jsonl", rows[n_train:])
    return directory


def tiny_tokenizer(chat_template: str | None = CHATML):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [m["content"] for row in conversations() + [multi_turn()] for m in row["messages"]]
    texts += ["system", "user", "assistant", "\n"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer=trainer)
    kwargs = {"chat_template": chat_template} if chat_template else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token=None, **kwargs
    )


def write_tiny_llama(directory: Path, chat_template: str | None = CHATML, seed: int = 0) -> Path:
    """A 2-layer Llama with random weights and the tiny tokenizer, saved as a normal model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(chat_template)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@functools.cache
def smollm2_model_dir() -> Path:
    """The embedded SmolLM2 as a transformers directory (converted from its GGUF once, then cached)."""
    from trainers.local_model import materialize, resolve_model

    return Path(materialize(resolve_model("local")).name_or_path)
