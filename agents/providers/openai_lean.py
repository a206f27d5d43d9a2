"""ChatOpenAI and OpenAIEmbeddings with a lean path for the hot loop of generation runs.

langchain-openai hands its request to the OpenAI SDK's typed `create` / `parse`, which walks every
message and the whole JSON schema through its TypedDict transformer before sending: ~6 ms of CPU per
call here (measured on the 2-core machine: 9.9 ms per structured call through `ChatOpenAI.ainvoke`,
4.4 ms through the SDK's plain `post`, 0.6 ms posting over aiohttp without LangChain's run
bookkeeping). At 32 calls in flight that CPU is what the run waits on, not the provider. These subclasses keep langchain-openai's payload building
and result parsing, and post the already-plain JSON body through `OpenAIHttp` (agents/providers/openai_http.py),
which takes base URL, key and headers from the SDK client and raises the SDK's error types; clients
with other authentication fall back to the SDK's documented `post`.

Embeddings likewise: the SDK turns every float of the answer into a typed model; here the raw answer
(base64 float32, as the SDK itself requests) is decoded with numpy.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from langsmith.utils import tracing_is_enabled
from pydantic import BaseModel, PrivateAttr

from agents.providers.openai_http import OpenAIHttp

# Connections per model when the factory does not say (it sizes the pool to the run's concurrency).
DEFAULT_POOL = 36


async def _post(owner: Any, client: Any, path: str, body: dict[str, Any]) -> Any:
    """POST through the owner's direct HTTP path, or the SDK's `post` for clients it cannot serve."""
    http = owner._direct_http
    if http is None and OpenAIHttp.supports(client):
        timeout = owner.request_timeout if isinstance(owner.request_timeout, (int, float)) else 600.0
        http = owner._direct_http = OpenAIHttp(client, pool=owner._pool, timeout_s=float(timeout))
    if http is not None:
        return await http.post(path, body)
    return await client.post(path, body=body, cast_to=object)


class _DirectHttp(BaseModel):
    """The private state both lean classes share: the direct HTTP path and its pool size."""

    _direct_http: OpenAIHttp | None = PrivateAttr(default=None)
    _pool: int = PrivateAttr(default=DEFAULT_POOL)

    def set_pool_size(self, connections: int) -> None:
        self._pool = max(connections, 1)

    async def aclose(self) -> None:
        """Close the direct path's connections (call inside the loop that used them)."""
        if self._direct_http is not None:
            await self._direct_http.aclose()


class LeanChatOpenAI(_DirectHttp, ChatOpenAI):
    """`ChatOpenAI` for `/chat/completions` whose async calls skip the SDK's request re-typing."""

    def _nobody_listens(self) -> bool:
        """No callbacks on the model or in the calling context (a LangGraph node passes an empty
        manager), no LangSmith tracing, no response cache and no LangChain rate limiter."""
        inherited = ensure_config(None).get("callbacks")
        handlers = getattr(inherited, "handlers", inherited)
        cache_off = self.cache is False or (self.cache is None and get_llm_cache() is None)
        return (
            not self.callbacks
            and not handlers
            and not tracing_is_enabled()
            and cache_off
            and self.rate_limiter is None
        )

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        # LangChain's run bookkeeping (callback managers, run ids, metadata) cost ~0.8 ms per call;
        # when nothing would observe it, the call goes straight to the request.
        if config is None and isinstance(input, list) and self._nobody_listens():
            messages = self._convert_input(input).to_messages()
            result = await self._agenerate(messages, stop=stop, **kwargs)
            generation = result.generations[0]
            # The metadata LangChain's own path merges into the message (model name, finish
            # reason, token usage, ...); there is no run, so no run id.
            generation.message.response_metadata = {
                **(result.llm_output or {}),
                **(generation.generation_info or {}),
                **generation.message.response_metadata,
            }
            return generation.message  # type: ignore[return-value]
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if self.streaming or payload.pop("stream", False) or self._use_responses_api(payload):
            # Streaming and the Responses API keep langchain-openai's own path.
            return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
        response = await _post(self, self.root_async_client, "/chat/completions", payload)
        return self._create_chat_result(response)


def _vector(value: str | list[float]) -> np.ndarray:
    if isinstance(value, str):  # base64 of little-endian float32
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return np.asarray(value, dtype=np.float32)


class LeanOpenAIEmbeddings(_DirectHttp, OpenAIEmbeddings):
    """`OpenAIEmbeddings` whose async calls post the request as is and decode the answer themselves."""

    async def aembed_matrix(self, texts: list[str]) -> np.ndarray:
        """One row per text, as float32; what the embedding judge works with."""
        if self.check_embedding_ctx_length:
            return np.asarray(await super().aembed_documents(texts), dtype=np.float32)
        body: dict[str, Any] = {"model": self.model, "encoding_format": "base64", **self.model_kwargs}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        # The root client (AsyncOpenAI) behind the embeddings resource langchain-openai built.
        client = self.async_client._client
        rows: list[np.ndarray] = []
        for start in range(0, len(texts), self.chunk_size):
            answer = await _post(
                self, client, "/embeddings", {**body, "input": texts[start : start + self.chunk_size]}
            )
            rows.extend(
                _vector(item["embedding"]) for item in sorted(answer["data"], key=lambda d: d["index"])
            )
        return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    async def aembed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        if chunk_size is not None or kwargs:
            return await super().aembed_documents(texts, chunk_size=chunk_size, **kwargs)
        return (await self.aembed_matrix(texts)).tolist()
