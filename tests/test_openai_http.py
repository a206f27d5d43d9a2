"""The direct HTTP path to OpenAI-compatible servers sends what the SDK would send and fails the way
the SDK would fail, against a real server on 127.0.0.1."""

import json
import socket

import openai
import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI

from agents.providers.openai_http import OpenAIHttp
from agents.providers.openai_lean import LeanChatOpenAI, LeanOpenAIEmbeddings
from agents.providers.resilience import is_transient_error, retry_after_seconds
from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from tests.conftest import FAKE_KEY

pytestmark = pytest.mark.integration

BODY = {"model": "mock-model", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 20}


def sdk_client(base_url: str, key: str = FAKE_KEY, **options) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, **options)


async def post(client: openai.AsyncOpenAI, body=BODY, path="/chat/completions"):
    http = OpenAIHttp(client, pool=4, timeout_s=5.0)
    try:
        return await http.post(path, body)
    finally:
        await http.aclose()


def serve(**config) -> MockOpenAIServer:
    return MockOpenAIServer(ServerConfig(api_key=FAKE_KEY, **config))


async def test_a_post_carries_the_sdk_clients_key_organization_project_and_headers():
    with serve() as server:
        client = sdk_client(
            server.base_url, organization="org-7", project="proj-3", default_headers={"X-Team": "culture"}
        )
        answer = await post(client)
        (request,) = server.requests()

    assert answer["choices"][0]["message"]["content"]  # the server accepted the key and answered
    assert request.body == BODY
    assert request.headers["openai-organization"] == "org-7"
    assert request.headers["openai-project"] == "proj-3"
    assert request.headers["x-team"] == "culture"
    assert request.headers["user-agent"].startswith("AsyncOpenAI/Python")


@pytest.mark.parametrize(
    ("fault", "error", "transient"),
    [
        ("429", openai.RateLimitError, True),
        ("500", openai.InternalServerError, True),
        ("503", openai.InternalServerError, True),
    ],
)
async def test_error_answers_raise_the_sdks_own_error_types(fault, error, transient):
    with (
        serve(fault_rate=1.0, fault_kinds=(fault,), retry_after_s=0.7) as server,
        pytest.raises(error) as caught,
    ):
        await post(sdk_client(server.base_url))

    assert caught.value.status_code == int(fault)
    assert is_transient_error(caught.value) is transient
    if fault == "429":  # the server's wait hint reaches the retry layer
        assert retry_after_seconds(caught.value) == pytest.approx(0.7)


async def test_a_wrong_key_raises_authentication_error_which_is_not_retried():
    with serve() as server, pytest.raises(openai.AuthenticationError) as caught:
        await post(sdk_client(server.base_url, key="sk-wrong"))

    assert caught.value.status_code == 401
    assert "Incorrect API key" in str(caught.value)
    assert not is_transient_error(caught.value)


async def test_a_garbled_body_is_a_transient_decode_error():
    with (
        serve(fault_rate=1.0, fault_kinds=("malformed",)) as server,
        pytest.raises(json.JSONDecodeError) as caught,
    ):
        await post(sdk_client(server.base_url))

    assert is_transient_error(caught.value)


async def test_an_unreachable_server_raises_api_connection_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(openai.APIConnectionError) as caught:
        await post(sdk_client(f"http://127.0.0.1:{port}/v1"))

    assert is_transient_error(caught.value)


async def test_the_lean_chat_model_answers_as_langchain_openai_does():
    messages = [HumanMessage("Rewrite: How important is family in your life?")]
    with serve() as server:
        options = {"model": "mock-model", "api_key": FAKE_KEY, "base_url": server.base_url, "max_retries": 0}
        lean = LeanChatOpenAI(**options)
        stock = await ChatOpenAI(**options).ainvoke(messages, temperature=0.0)
        fast = await lean.ainvoke(messages, temperature=0.0)
        await lean.aclose()

    assert fast.text == stock.text
    assert fast.usage_metadata == stock.usage_metadata
    assert fast.response_metadata["model_name"] == stock.response_metadata["model_name"]


class CountingHandler(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.finished = 0

    async def on_llm_end(self, response, **kwargs) -> None:
        self.finished += 1


async def test_callbacks_still_see_every_lean_call():
    with serve() as server:
        handler = CountingHandler()
        options = {"model": "mock-model", "api_key": FAKE_KEY, "base_url": server.base_url}
        on_model = LeanChatOpenAI(**options, callbacks=[handler])
        per_call = LeanChatOpenAI(**options)
        await on_model.ainvoke([HumanMessage("Say hello.")])
        await per_call.ainvoke([HumanMessage("Say hello.")], config={"callbacks": [handler]})
        await per_call.ainvoke([HumanMessage("Say hello.")])  # nobody listens: not counted
        await on_model.aclose()
        await per_call.aclose()

    assert handler.finished == 2


async def test_lean_embeddings_decode_the_servers_vectors_in_input_order():
    with serve() as server:
        embeddings = LeanOpenAIEmbeddings(
            model="mock-embed", api_key=FAKE_KEY, base_url=server.base_url, check_embedding_ctx_length=False
        )
        matrix = await embeddings.aembed_matrix(["family", "work", "family"])
        await embeddings.aclose()
        (request,) = server.requests("/embeddings")

    assert matrix.shape[0] == 3 and matrix.dtype.name == "float32"
    assert (matrix[0] == matrix[2]).all() and not (matrix[0] == matrix[1]).all()
    assert request.body["encoding_format"] == "base64"


async def test_clients_the_direct_path_cannot_serve_go_through_the_sdk(monkeypatch):
    monkeypatch.setattr(OpenAIHttp, "supports", staticmethod(lambda client: False))
    with serve() as server:
        chat = LeanChatOpenAI(model="mock-model", api_key=FAKE_KEY, base_url=server.base_url, max_retries=0)
        answer = await chat.ainvoke([HumanMessage("Say hello.")])
        await chat.aclose()
        (request,) = server.requests()

    assert answer.text
    assert chat._direct_http is None  # the SDK's own client posted it
    assert request.headers["user-agent"].startswith("AsyncOpenAI/Python")


def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(monkeypatch):
    from agents.providers.openai_http import environment_proxy

    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert environment_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert environment_proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert environment_proxy("http://10.0.0.5:8000/v1") is None  # only HTTPS_PROXY is set
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert environment_proxy("https://api.openai.com/v1") is None


def test_only_plain_key_clients_without_query_parameters_take_the_direct_path():
    assert OpenAIHttp.supports(sdk_client("http://127.0.0.1:1/v1"))
    assert not OpenAIHttp.supports(sdk_client("http://127.0.0.1:1/v1", default_query={"api-version": "1"}))
