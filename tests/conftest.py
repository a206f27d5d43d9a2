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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A real `train` output directory: a 2-step LoRA fine-tune of the embedded SmolLM2 on the Arabic
    WVS seed examples (built by build-dataset). Session-wide: evaluate's tests and README's evaluate
    command share the one training run (~40 s on 2 cores)."""
    from cli import main

    root = tmp_path_factory.mktemp("trained")
    dataset, train = root / "dataset", root / "train"
    assert main(["build-dataset", "--culture", "Arabic", "--out", str(dataset)]) == 0
    args = ["train", "--base-model", "local", "--data", str(dataset), "--max-steps", "2"]
    assert main([*args, "--output-dir", str(train)]) == 0
    assert (train / "adapter" / "adapter_config.json").exists()
    return train
