"""The one place where spec strings become models and judges.

Every chat model and API embedder is wrapped here in the run's shared limits, retries and usage
meter, so nodes never deal with rate limits or transport errors.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.providers.chat import AnswerSchema, ResilientChatModel
from agents.providers.embedders import ApiEmbedder, Embedder, LocalSentenceEmbedder
from agents.providers.endpoints import base_url_problem, shown_url
from agents.providers.local_llm import LocalLlamaChat, LocalModelMissing, embedded_gguf_path
from agents.providers.resilience import CallLimits, GateRegistry, RateGate, RetryPolicy, UsageMeter
from agents.providers.specs import ModelSpec, SpecError, parse_model_spec
from storage.ledger import CallLedger
from storage.packaged import PackagedFileMissing

OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_URL_ENV = "OPENAI_BASE_URL"
GOOGLE_KEY_ENVS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
# Set to 1 to decode every local structured answer under a JSON-schema grammar (not only retries).
LOCAL_GRAMMAR_ENV = "CULTURE_FORGE_LOCAL_GRAMMAR"
# Servers such as vLLM, llama.cpp or Ollama accept any key; the OpenAI client insists on one.
PLACEHOLDER_KEY = "not-needed"


@dataclass
class ModelServices:
    """What all models of one run share: limits, the gate enforcing them, retries, usage counters."""

    limits: CallLimits = field(default_factory=CallLimits)
    base_url: str | None = None
    gate: RateGate = field(init=False)
    policy: RetryPolicy = field(init=False)
    meter: UsageMeter = field(default_factory=UsageMeter)
    # Where answers are recorded and replayed from; None for a run without a directory (tests, tools).
    ledger: CallLedger | None = None
    # The server's gates, shared with its other jobs (`serve`); None: the run's own gate serves all.
    shared_gates: GateRegistry | None = None

    def __post_init__(self) -> None:
        self.gate = RateGate(self.limits)
        self.policy = RetryPolicy(self.limits)
        self._shared_used: dict[str, RateGate] = {}

    def gate_for(self, provider: str, endpoint: str | None = None, key: str = "") -> RateGate:
        """The gate an API model's calls go through: the server's gate for this provider, endpoint
        and key when runs share gates, else the run's own. Local models always use the run's own
        (they are not a shared quota)."""
        if self.shared_gates is None or provider not in ("openai", "google"):
            return self.gate
        # The key is told apart by a digest: gates are listed on status pages, keys never are.
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        where = shown_url(endpoint) if endpoint else "default"
        gate = self.shared_gates.gate(provider, f"{where}|{digest}")
        self._shared_used[f"{provider} {where}"] = gate
        return gate

    def rate_report(self, seconds: float) -> dict[str, Any]:
        """The manifest's `rate`: the run's own gate, and the server-wide gates its calls went
        through (their counts are the whole server's, every job's, since they started)."""
        report: dict[str, Any] = self.gate.report(seconds)
        if self._shared_used:
            report["shared_gates"] = {
                name: {**gate.report(seconds), "note": "server-wide, all jobs"}
                for name, gate in self._shared_used.items()
            }
        return report


def connection_pool_size(services: ModelServices) -> int:
    """Connections per OpenAI-compatible model: one per call slot and a spare few for the judge."""
    return max(services.limits.concurrency, 1) + 4


def openai_endpoint(base_url: str | None) -> tuple[str | None, str]:
    """(base URL, API key) for OpenAI-compatible calls, from the flag or the environment.

    A URL with credentials is kept as given: the SDK client, and the direct HTTP path after it,
    send them as basic auth (agents/providers/endpoints.py).
    """
    url = base_url or os.environ.get(OPENAI_URL_ENV) or None
    if url is not None:
        problem = base_url_problem(url)
        if problem is not None:
            source = "--base-url" if base_url else OPENAI_URL_ENV
            raise SpecError(f"{source} {shown_url(url)}: not a server URL ({problem})")
    key = os.environ.get(OPENAI_KEY_ENV, "").strip()
    if not key:
        if url is None:
            raise SpecError(
                f"{OPENAI_KEY_ENV} is not set; openai: models need it (or give --base-url for a server without keys)"
            )
        key = PLACEHOLDER_KEY
    return url, key


def google_key() -> str:
    for name in GOOGLE_KEY_ENVS:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    raise SpecError(f"{GOOGLE_KEY_ENVS[0]} is not set; google: models need it")


def _local_structured(schema: AnswerSchema, attempt: int) -> dict[str, Any]:
    """First attempt free-form, retries under a JSON-schema grammar.

    The templates show the JSON answer on one line and the small model follows the example, so the
    first attempt stops at the line end (cutting off its habit of looping) and the lenient parsers
    salvage what they can, at ~45 tokens/s. Grammar sampling makes the answer valid by construction
    (and, with the per-sentence schema, restricted to the sentence's words) but runs at ~8 tokens/s
    on 2 cores, so it is kept for the retry after an unusable answer.
    """
    if attempt == 0 and os.environ.get(LOCAL_GRAMMAR_ENV) != "1":
        return {"stop": ["\n"]}
    return {"response_format": {"type": "json_object", "schema": schema.json_schema}}


def _openai_structured(schema: AnswerSchema, attempt: int = 0) -> dict[str, Any]:
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema.name, "schema": schema.json_schema, "strict": False},
        }
    }


def _google_structured(schema: AnswerSchema, attempt: int = 0) -> dict[str, Any]:
    return {"response_mime_type": "application/json", "response_json_schema": schema.json_schema}


def _local_gguf(spec: ModelSpec) -> Path:
    if not spec.model:
        try:
            return embedded_gguf_path()
        except LocalModelMissing as exc:
            raise SpecError(str(exc)) from None
    path = Path(spec.model).expanduser()
    if not path.is_file():
        raise SpecError(f"local model file {path} does not exist")
    return path


def create_chat_model(
    spec: str | ModelSpec,
    limits: CallLimits | None = None,
    *,
    services: ModelServices | None = None,
    flag: str = "--generator",
    seed: int = 0,
    adapter: Path | None = None,
) -> ResilientChatModel:
    """Resolve `local`, `local:PATH.gguf`, `openai:MODEL`, `google:MODEL` or `hf:ID_OR_PATH` (or a
    train output directory) into a resilient chat model.

    `adapter` is a LoRA adapter directory for an `hf:` model (evaluate's --adapter); the model's label,
    and so its ledger keys, become `SPEC+ADAPTER`, so its answers are never replayed for the bare base.
    """
    parsed = spec if isinstance(spec, ModelSpec) else parse_model_spec(spec, flag=flag)
    if adapter is not None and parsed.provider != "hf":
        raise SpecError(
            f"--adapter {adapter}: only hf: models take an adapter (it needs the base weights), not {parsed}"
        )
    services = services or ModelServices(limits=limits or CallLimits())
    timeout = services.limits.timeout_s
    common = {
        "gate": services.gate,
        "policy": services.policy,
        "meter": services.meter,
        "ledger": services.ledger,
    }
    if parsed.provider == "local":
        chat = LocalLlamaChat(model_path=str(_local_gguf(parsed)), seed=seed)
        # One llama.cpp context serves one call at a time.
        return ResilientChatModel(
            str(parsed), chat, structured_args=_local_structured, seeded=True, parallelism=1, **common
        )
    if parsed.provider == "hf":
        from agents.providers.hf_chat import HFChat, hf_structured, resolve_hf_model

        chat = HFChat.from_plan(resolve_hf_model(parsed.model, adapter, flag=flag), seed=seed)
        label = str(parsed) if adapter is None else f"{parsed}+{adapter}"
        # Calls in flight become one generate batch: let the runner keep a batch's worth in flight.
        return ResilientChatModel(
            label, chat, structured_args=hf_structured, seeded=True, parallelism=chat.max_batch, **common
        )
    if parsed.provider == "openai":
        from agents.providers.openai_lean import LeanChatOpenAI

        url, key = openai_endpoint(services.base_url)
        chat = LeanChatOpenAI(
            model=parsed.model,
            api_key=key,
            base_url=url,
            timeout=timeout,
            max_retries=0,
        )
        chat.set_pool_size(connection_pool_size(services))
        common["gate"] = services.gate_for("openai", url, key)
        return ResilientChatModel(str(parsed), chat, structured_args=_openai_structured, **common)
    from langchain_google_genai import ChatGoogleGenerativeAI

    key = google_key()
    chat = ChatGoogleGenerativeAI(model=parsed.model, google_api_key=key, timeout=timeout, max_retries=0)
    common["gate"] = services.gate_for("google", None, key)
    return ResilientChatModel(str(parsed), chat, structured_args=_google_structured, **common)


def create_embedder(spec: ModelSpec, services: ModelServices, *, flag: str = "--judge") -> Embedder:
    label = f"embed:{spec}"
    if spec.provider == "local":
        if not spec.model:
            try:
                return LocalSentenceEmbedder(spec=label)
            except PackagedFileMissing as exc:
                raise SpecError(str(exc)) from None
        path = Path(spec.model).expanduser()
        if not path.is_dir():
            raise SpecError(f"{flag} {label}: {path} is not a sentence-transformers model directory")
        return LocalSentenceEmbedder(path, spec=label)
    common = {
        "gate": services.gate,
        "policy": services.policy,
        "meter": services.meter,
        "ledger": services.ledger,
    }
    if spec.provider == "openai":
        from agents.providers.openai_lean import LeanOpenAIEmbeddings

        url, key = openai_endpoint(services.base_url)
        embeddings = LeanOpenAIEmbeddings(
            model=spec.model,
            api_key=key,
            base_url=url,
            timeout=services.limits.timeout_s,
            max_retries=0,
            check_embedding_ctx_length=False,
        )
        embeddings.set_pool_size(connection_pool_size(services))
        common["gate"] = services.gate_for("openai", url, key)
        return ApiEmbedder(label, embeddings, **common)
    from langchain_google_genai import GoogleGenerativeAIEmbeddings

    key = google_key()
    embeddings = GoogleGenerativeAIEmbeddings(model=spec.model, google_api_key=key)
    common["gate"] = services.gate_for("google", None, key)
    return ApiEmbedder(label, embeddings, **common)
