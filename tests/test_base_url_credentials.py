"""A base URL with credentials (`http://user:password@host/v1`, a server behind a proxy asking for
basic auth) is sent as the OpenAI SDK sends it, and its password is never printed or stored."""

import base64
from urllib.parse import quote

import openai
import pytest

from agents.providers.endpoints import redact_url, redact_urls
from agents.providers.openai_http import OpenAIHttp
from bench.mock_openai_server import MockOpenAIServer, ServerConfig
from cli import main
from tests.loopback import free_loopback_port

pytestmark = pytest.mark.integration

USER = "team"
PASSWORD = "p@ss:w/rd-DO-NOT-LEAK"
# What HTTP basic auth makes of them (RFC 7617), computed here without the code under test.
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class BasicAuthServer(MockOpenAIServer):
    """The mock server behind a proxy that admits only basic auth with USER and PASSWORD."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        super().__init__(ServerConfig())

    def _handler_class(self):
        server = self

        class Handler(super()._handler_class()):
            def _authorised(self) -> bool:
                server.authorizations.append(self.headers.get("Authorization"))
                return self.headers.get("Authorization") == BASIC

        return Handler

    def url_with(self, password: str = PASSWORD) -> str:
        return self.base_url.replace("http://", f"http://{quote(USER)}:{quote(password, safe='')}@")


@pytest.fixture
def proxy(no_provider_env):
    with BasicAuthServer() as server:
        yield server


def augment(url: str, out, *flags: str) -> int:
    return main(
        [
            "augment",
            "--quiet",
            "--generator",
            "openai:mock-model",
            "--base-url",
            url,
            "--out",
            str(out),
            *flags,
        ]
    )


def test_a_run_through_a_url_with_credentials_authenticates_every_request(tmp_path, proxy, capsys):
    out = tmp_path / "run"
    assert augment(proxy.url_with(), out, "--limit", "1", "--n", "2") == 0
    assert proxy.requests("/chat/completions")
    assert set(proxy.authorizations) == {BASIC}  # the preflight and every call, never a bearer key
    printed = capsys.readouterr()
    assert PASSWORD not in printed.out + printed.err
    for path in out.iterdir():
        assert PASSWORD.encode() not in path.read_bytes(), path.name
        assert quote(PASSWORD, safe="").encode() not in path.read_bytes(), path.name
    manifest = (out / "manifest.json").read_text()
    assert f'"base_url": "http://***@127.0.0.1:{proxy._httpd.server_address[1]}/v1"' in manifest


async def test_the_direct_path_sends_the_credentials_as_the_sdk_does(proxy):
    body = {"model": "mock-model", "messages": [{"role": "user", "content": "Say hello."}]}
    client = openai.AsyncOpenAI(api_key="sk-ignored", base_url=proxy.url_with(), max_retries=0)
    await client.post("/chat/completions", body=body, cast_to=object)
    http = OpenAIHttp(client, pool=2, timeout_s=5.0)
    try:
        answer = await http.post("/chat/completions", body)
    finally:
        await http.aclose()
        await client.close()
    assert answer["choices"][0]["message"]["content"]
    sdk, direct = proxy.authorizations
    assert sdk == direct == BASIC


def test_a_wrong_password_is_one_line_without_it(tmp_path, proxy, capsys):
    wrong = "not-the-password-42"
    out = tmp_path / "run"
    assert augment(proxy.url_with(wrong), out, "--limit", "1") == 2
    err = capsys.readouterr().err.strip()
    port = proxy._httpd.server_address[1]
    assert err == (
        f"error: http://***@127.0.0.1:{port}/v1 rejected the user and password in the base URL (HTTP 401)"
    )
    assert not out.exists()
    assert not proxy.requests("/chat/completions", status=None)


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path, no_provider_env, capsys):
    port = free_loopback_port()
    out = tmp_path / "run"
    assert augment(f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/v1", out, "--limit", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(
        f"error: cannot reach the OpenAI-compatible server at http://***@127.0.0.1:{port}/v1"
    )
    assert "DO-NOT-LEAK" not in err and USER not in err
    assert not out.exists()


def test_a_resume_asks_for_the_credentials_again(tmp_path, proxy, capsys):
    out = tmp_path / "run"
    assert augment(proxy.url_with(), out, "--limit", "1", "--n", "2") == 0
    assert main(["augment", "--quiet", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "had credentials, which are never stored; give --base-url again" in err
    assert len(err.splitlines()) == 1
    assert main(["augment", "--quiet", "--resume", str(out), "--base-url", proxy.url_with()]) == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8011/v1", "http://127.0.0.1:8011/v1"),
        ("https://me:pw@api.example.org/v1?api-key=sk-1", "https://***@api.example.org/v1"),
        ("http://:pw@[::1]:8011/v1", "http://***@[::1]:8011/v1"),
        ("http://token@host/v1", "http://***@host/v1"),
    ],
)
def test_a_url_is_shown_without_credentials_or_query(url, shown):
    assert redact_url(url) == shown


def test_credentials_are_hidden_wherever_a_message_quotes_a_url():
    message = "POST http://me:pw@127.0.0.1:9/v1/chat failed; retried https://a:b@c/v1 too"
    assert redact_urls(message) == "POST http://***@127.0.0.1:9/v1/chat failed; retried https://***@c/v1 too"
