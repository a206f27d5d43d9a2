"""JSON POSTs to an OpenAI-compatible server straight over aiohttp, failing with the SDK's own errors.

The OpenAI SDK spends ~1.2 ms of CPU per request before and after the network (typed request
options, header merging, httpx's request and response models), against ~0.5 ms for the same POST
on a bare aiohttp session (measured on the 2-core machine at 32 requests in flight). A generation
run at 32 calls in flight is bound by exactly that CPU, so the hot path posts here. Everything that
shapes the request comes from the SDK client langchain-openai built (base URL, API key, organization
and project headers, the user's default headers), and failures are raised as the SDK's error types
(`RateLimitError` with its response headers, `AuthenticationError`, `APIConnectionError`, ...), so
the retry layer and error messages see exactly what the SDK would have raised.

Only plain API-key clients without default query parameters take this path; other authentication
(workload identity, providers) and query parameters stay with the SDK (`OpenAIHttp.supports`).
Credentials in the base URL are sent as the SDK sends them: HTTP basic auth in place of the bearer key.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import openai
import orjson

from agents.providers.endpoints import split_credentials

try:  # the HTTP library the OpenAI SDK builds its errors' responses from (httpx before 3.x)
    import httpx2 as sdk_httpx
except ImportError:  # pragma: no cover - older SDKs
    import httpx as sdk_httpx  # type: ignore[no-redef]

_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def status_error(status: int, headers: dict[str, str], content: bytes, url: str) -> openai.APIStatusError:
    """The SDK error for an HTTP error answer, carrying the answer's headers (Retry-After) and body."""
    try:
        body: Any = json.loads(content) if content else None
    except ValueError:
        body = content.decode("utf-8", "replace").strip() or None
    detail = body.get("error", body) if isinstance(body, dict) else body
    response = sdk_httpx.Response(
        status, headers=headers, content=content, request=sdk_httpx.Request("POST", url)
    )
    kind = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return kind(f"Error code: {status} - {body}", response=response, body=detail)


def environment_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY name for `url`, as the SDK's httpx client would use.

    Looked up once per client: aiohttp's `trust_env` looks the environment (and ~/.netrc) up on every
    request, which cost ~0.8 ms of CPU per call.
    """
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class OpenAIHttp:
    """POSTs JSON bodies for one SDK client; one aiohttp session per event loop, closed by `aclose`."""

    def __init__(self, client: openai.AsyncOpenAI, *, pool: int, timeout_s: float) -> None:
        # aiohttp refuses a URL with credentials next to an Authorization header; the SDK's client
        # sends basic auth made from them instead of the bearer key, and so does this path.
        self._base, basic_auth = split_credentials(str(client.base_url).rstrip("/"))
        headers = {**client.default_headers, **client.auth_headers}
        if basic_auth is not None:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = basic_auth
        # The SDK marks headers it should leave out (no organization set) with Omit objects.
        self._headers = {k: v for k, v in headers.items() if isinstance(v, str)}
        self._pool = pool
        self._proxy = environment_proxy(self._base)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def supports(client: openai.AsyncOpenAI) -> bool:
        """Whether the client authenticates with a plain API key and adds no query parameters (as an
        Azure-style `api-version` would): the only kind handled here."""
        return (
            bool(client.api_key)
            and getattr(client, "workload_identity", None) is None
            and not client.default_query
        )

    def _session_in_running_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            # Pooled connections belong to the loop that opened them; a new loop gets its own pool.
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool, limit_per_host=self._pool),
                timeout=self._timeout,
            )
        return self._session

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """The decoded JSON answer; an error answer raises the SDK's error for its status."""
        url = self._base + path
        session = self._session_in_running_loop()
        try:
            async with session.post(
                url, data=orjson.dumps(body), headers=self._headers, proxy=self._proxy
            ) as response:
                content = await response.read()
                status = response.status
                headers = dict(response.headers) if status >= 400 else {}
        except aiohttp.ClientError as exc:
            raise openai.APIConnectionError(
                message=f"{type(exc).__name__}: {exc}", request=sdk_httpx.Request("POST", url)
            ) from exc
        if status >= 400:
            raise status_error(status, headers, content, url)
        # A garbled body raises orjson's JSONDecodeError (a json.JSONDecodeError): transient.
        return orjson.loads(content)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
