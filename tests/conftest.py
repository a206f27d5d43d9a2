import os

import pytest

from bench.mock_openai_server import MockOpenAIServer, ServerConfig

# The embedded models are loaded from installed packages; nothing may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAKE_KEY = "sk-test-DO-NOT-LEAK-1234567890abcdef"


@pytest.fixture
def no_provider_env(monkeypatch):
    """Tests decide which provider variables exist; the developer's own keys never leak in."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def mock_openai(no_provider_env):
    """A real OpenAI-compatible HTTP server on 127.0.0.1, with FAKE_KEY in OPENAI_API_KEY."""
    no_provider_env.setenv("OPENAI_API_KEY", FAKE_KEY)
    with MockOpenAIServer(ServerConfig(api_key=FAKE_KEY)) as server:
        yield server


def mock_augment_args(server, *flags: str) -> list[str]:
    """`cli.py augment` arguments for the mock server's generator (quiet), followed by `flags`."""
    return ["augment", "--quiet", "--generator", "openai:mock-model", "--base-url", server.base_url, *flags]
