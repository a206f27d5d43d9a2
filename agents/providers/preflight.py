"""Checks run before a run directory is created, so bad specs, keys and endpoints fail in seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agents.providers.chat import ResilientChatModel
from agents.providers.embedders import ApiEmbedder, Embedder, LocalSentenceEmbedder
from agents.providers.endpoints import has_credentials, redact_url, redact_urls
from agents.providers.factory import OPENAI_KEY_ENV, ModelServices, openai_endpoint
from agents.providers.hf_chat import HFChat
from agents.providers.local_llm import LocalLlamaChat, _load_llama
from agents.providers.specs import SpecError


async def _check_openai_server(base_url: str | None, timeout: float) -> None:
    import openai

    url, key = openai_endpoint(base_url)
    client = openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=1, timeout=timeout)
    where = redact_url(url) or "the OpenAI API"
    # With credentials in the URL the SDK sends them (basic auth) instead of the key.
    secret = (
        "the user and password in the base URL"
        if has_credentials(url)
        else f"the API key in {OPENAI_KEY_ENV}"
    )
    try:
        await client.models.list()
    except openai.AuthenticationError:
        raise SpecError(f"{where} rejected {secret} (HTTP 401)") from None
    except openai.PermissionDeniedError:
        raise SpecError(f"{where} refused access with {secret} (HTTP 403)") from None
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise SpecError(
            f"cannot reach the OpenAI-compatible server at {where}: {redact_urls(str(exc))}"
        ) from None
    except openai.APIStatusError:
        pass  # servers without /models still serve chat completions
    finally:
        await client.close()


async def preflight(
    chat_models: Sequence[ResilientChatModel], embedders: Sequence[Embedder], services: ModelServices
) -> None:
    """Load local models and check that OpenAI-compatible endpoints answer and accept the key."""
    needs_openai = False
    for model in chat_models:
        if isinstance(model.chat, LocalLlamaChat):
            chat = model.chat
            try:
                await asyncio.to_thread(_load_llama, chat.model_path, chat.n_ctx, chat.n_threads)
            except Exception as exc:  # llama.cpp raises ValueError for any unloadable file
                raise SpecError(f"cannot load local model {chat.model_path}: {exc}") from None
        elif isinstance(model.chat, HFChat):
            await model.chat.aload()  # raises SpecError in one line for a bad model or adapter
        elif model.spec.startswith("openai:"):
            needs_openai = True
    for embedder in embedders:
        if isinstance(embedder, LocalSentenceEmbedder):
            try:
                await embedder.embed(["warm-up"])
            except Exception as exc:
                raise SpecError(f"cannot load embedding model {embedder.path}: {exc}") from None
        elif isinstance(embedder, ApiEmbedder) and embedder.spec.startswith("embed:openai:"):
            needs_openai = True
    if needs_openai:
        url, key = openai_endpoint(services.base_url)
        # The check is a request to the provider like any other: it takes a slot of the gate (a
        # server's jobs share one per provider and key, and its limits count every request).
        async with services.gate_for("openai", url, key).slot(0):
            await _check_openai_server(services.base_url, min(services.limits.timeout_s, 15.0))
