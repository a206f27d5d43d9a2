"""The llama.cpp prompt cache stays within its byte budget (it once grew the process to 6.9 GB)."""

import numpy as np
from llama_cpp.llama import LlamaState

from agents.providers.local_llm import _compact_prompt_cache

VOCAB = 49152


def state(n_tokens: int, kv_bytes: int = 1 << 20) -> LlamaState:
    return LlamaState(
        input_ids=np.zeros(1024, dtype=np.intc),
        scores=np.ones((n_tokens, VOCAB), dtype=np.single),
        n_tokens=n_tokens,
        llama_state=b"\0" * kv_bytes,
        llama_state_size=kv_bytes,
        seed=0,
    )


def test_an_entry_keeps_only_the_last_row_of_logits():
    cache = _compact_prompt_cache(64 << 20)
    cache[(1, 2, 3)] = state(400)
    kept = cache[(1, 2, 3)]
    assert kept.scores.shape == (1, VOCAB)
    # restoring broadcasts the row into the model's logits buffer, as the stock cache's copy did
    buffer = np.zeros((512, VOCAB), dtype=np.single)
    buffer[: kept.n_tokens, :] = kept.scores
    assert buffer[399, 0] == 1.0


def test_the_cap_counts_every_byte_an_entry_holds():
    cache = _compact_prompt_cache(5 << 20)
    for i in range(10):
        cache[(i, i + 1)] = state(300, kv_bytes=1 << 20)
    assert cache.cache_size <= 5 << 20
    assert 3 <= len(cache.cache_state) <= 4  # each entry: 1 MiB of KV state + 192 KiB of logits + ids
    assert (9, 10) in cache  # the newest stay, the oldest go
