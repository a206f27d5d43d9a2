"""`hf:` models: a Hugging Face causal LM run in-process by transformers, with dynamic batching.

What a spec names (resolve_hf_model):
  hf:local                the embedded SmolLM2, converted once from its GGUF by the trainers' loader
                          (the same cached transformers copy `train --base-model local` uses)
  hf:ORG/NAME             a hub model already in the local Hugging Face cache (the hub is off by default)
  hf:DIR, hf:FILE.gguf    a transformers model directory (config.json), or a GGUF file (converted once)
  hf:RUN/train, RUN/train a train output directory: the base model and adapter (or the fully fine-tuned
                          model) that its summary.json names
A LoRA adapter that `train` wrote (any peft adapter directory) is not part of the spec string: it is
attached by `create_chat_model(spec, adapter=DIR)`, which is what evaluate's `--adapter DIR` passes,
and the resilient model's label (and so its ledger keys) becomes `SPEC+DIR`.

Batching: `_agenerate` queues the request and asks the local-compute thread to serve the queue; each
turn there takes the waiting requests (up to `max_batch`) and answers them with one left-padded
`generate` call. Requests that arrive while a batch runs wait for the next one, so as many calls as
the runner keeps in flight end up sharing a batch. Every request keeps its own max_tokens,
temperature, top-p and seed inside a shared batch (see _RowLimits and _RowSampler).

Option probabilities (`HFChat.option_probabilities`, for survey questions answered by one code) do
not go through the queue: the prompt is read once and every option is scored on top of its cache in
one forward pass (see option_logprobs). An option's score is P(the answer starts with the option as a
whole word or number): its tokens, then a boundary token (the end of the answer, ".", " ", "\n", ...;
see agents.providers.option_scoring), because the embedded model answers "1. Strongly agree", not "1".
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import threading
import time
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from agents.providers.local_compute import LOCAL_COMPUTE, release_freed_memory, run_local
from agents.providers.option_scoring import (
    AnswerBoundaries,
    ScoresAnswerStarts,
    answer_boundaries,
    answer_start_logprob,
)
from agents.providers.specs import TRAIN_SUMMARY, SpecError

EMBEDDED = "local"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class HFModelPlan:
    """What an `hf:` spec loads: a base model and, optionally, a peft adapter on top of it."""

    # What trainers.local_model.resolve_model takes: "local", a hub id, a model directory or a .gguf file.
    base: str
    adapter: str | None = None

    def __str__(self) -> str:
        return self.base if self.adapter is None else f"{self.base}+{self.adapter}"


def check_adapter(adapter: Path, *, flag: str = "--adapter") -> str:
    """The adapter directory as a string, refused in one line unless peft can load it."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise SpecError(f"{flag} {adapter}: no such directory")
    if not (path / ADAPTER_CONFIG).is_file():
        raise SpecError(f"{flag} {adapter}: no {ADAPTER_CONFIG} in it (not a LoRA adapter that train wrote)")
    return str(path)


def _locate(recorded: str, train_dir: Path) -> Path | None:
    """A directory summary.json names: as recorded (absolute, or relative to where train ran), else
    beside the summary under the same name (the run directory was moved or copied)."""
    path = Path(recorded).expanduser()
    for candidate in (path, train_dir / path.name):
        if candidate.is_dir():
            return candidate
    return None


def plan_from_train_dir(train_dir: Path, *, flag: str = "--model") -> HFModelPlan:
    """The model a train output directory holds: base + adapter, else the merged or fully trained model."""
    summary_path = train_dir / TRAIN_SUMMARY
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(f"{flag} {train_dir}: cannot read {summary_path}: {exc}") from None
    if not isinstance(summary, dict) or not summary.get("base_model"):
        raise SpecError(f"{flag} {train_dir}: {summary_path} names no base_model (not a train summary)")
    # The adapter as trained first: evaluating it on its base is what train measured the loss of.
    if summary.get("adapter_dir"):
        adapter = _locate(str(summary["adapter_dir"]), train_dir)
        if adapter is not None:
            base = str(summary["base_model"])
            resolve_hf_model(base, flag=f"{flag} {train_dir} (base_model in {TRAIN_SUMMARY})")
            return HFModelPlan(base, check_adapter(adapter, flag=f"{flag} {train_dir}: adapter"))
    for key in ("merged_dir", "model_dir"):
        if summary.get(key):
            found = _locate(str(summary[key]), train_dir)
            if found is not None:
                return resolve_hf_model(str(found), flag=f"{flag} {train_dir} ({key})")
    named = [f"{k}={summary[k]}" for k in ("adapter_dir", "merged_dir", "model_dir") if summary.get(k)]
    raise SpecError(
        f"{flag} {train_dir}: {summary_path} names no model that exists here "
        f"({', '.join(named) or 'no adapter_dir, merged_dir or model_dir'})"
    )


def _looks_like_path(target: str) -> bool:
    # Hub ids are NAME or ORG/NAME; anything else with a slash, or starting like a path, is a path.
    return target.startswith(("/", ".", "~")) or target.count("/") > 1 or target.endswith("/")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except HFValidationError:
        return False


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_hf_model(target: str, adapter: Path | None = None, *, flag: str = "--model") -> HFModelPlan:
    """Check what `hf:TARGET` (plus an adapter) names, without loading it: bad specs fail in one line."""
    adapter_dir = check_adapter(adapter, flag="--adapter") if adapter is not None else None
    where = f"{flag} hf:{target}"
    if target == EMBEDDED:
        from trainers.config import UserError
        from trainers.local_model import packaged_gguf

        try:
            packaged_gguf()
        except UserError as exc:
            raise SpecError(f"{where}: {exc}") from None
        return HFModelPlan(EMBEDDED, adapter_dir)
    path = Path(target).expanduser()
    if path.is_dir():
        if (path / TRAIN_SUMMARY).is_file():
            if adapter_dir is not None:
                raise SpecError(
                    f"{where}: a train output directory brings its own adapter; drop --adapter {adapter}"
                )
            return plan_from_train_dir(path, flag=flag)
        if (path / "config.json").is_file():
            return HFModelPlan(str(path), adapter_dir)
        if (path / ADAPTER_CONFIG).is_file():
            raise SpecError(
                f"{where}: {path} is a LoRA adapter, not a model: give its base model and --adapter {path}"
            )
        raise SpecError(f"{where}: {path} is not a transformers model directory (no config.json)")
    if path.is_file():
        if path.suffix == ".gguf":
            return HFModelPlan(str(path), adapter_dir)
        raise SpecError(f"{where}: {path} is a file, not a model directory or a .gguf file")
    if _looks_like_path(target):
        raise SpecError(f"{where}: {path} does not exist")
    if _hub_offline() and not _in_hub_cache(target):
        raise SpecError(
            f"{where}: neither a local directory nor a model in the Hugging Face cache, and the hub is off "
            f"(HF_HUB_OFFLINE=1): download it first (hf download {target}) or pass a model directory"
        )
    return HFModelPlan(target, adapter_dir)


def token_pieces(tokenizer) -> list[str]:
    """Each token's text as the model writes it after other text, by id.

    Every token is decoded after an anchor token and the anchor's text removed: decoding a token alone
    drops the leading space of SentencePiece tokens ("▁1" would read "1"), which would hide a boundary.
    """
    anchor = list(tokenizer("a", add_special_tokens=False)["input_ids"])[:1]
    anchor_text = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
    pairs = tokenizer.batch_decode(
        [anchor + [token] for token in range(len(tokenizer))], clean_up_tokenization_spaces=False
    )
    pieces = []
    for token, pair in enumerate(pairs):
        if anchor and pair.startswith(anchor_text):
            pieces.append(pair[len(anchor_text) :])
        else:  # the anchor and the token merged in decoding: the token's own text is the best guess
            pieces.append(tokenizer.decode([token], clean_up_tokenization_spaces=False))
    return pieces


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    eos_ids: frozenset[int]
    pad_id: int
    device: Any

    # Computed on first use, under the local-compute lock (option scoring), then kept with the model.
    @cached_property
    def answer_boundaries(self) -> AnswerBoundaries:
        """Which tokens end an option at the start of an answer (the end tokens are those generate stops at)."""
        vocab_size = int(self.model.get_input_embeddings().weight.shape[0])
        return answer_boundaries(token_pieces(self.tokenizer), self.eos_ids, vocab_size)

    @cached_property
    def boundary_mask(self) -> Any:
        """`answer_boundaries.is_boundary` as a tensor on the model's device, to mask its logits with."""
        import torch

        return torch.from_numpy(self.answer_boundaries.is_boundary).to(self.device)


_LOAD_LOCK = threading.Lock()


@cache
def _load(plan: HFModelPlan) -> LoadedModel:
    import torch

    from trainers.chat_data import has_chat_template
    from trainers.local_model import (
        go_offline_for,
        load_causal_lm,
        load_tokenizer,
        materialize,
        resolve_model,
    )

    source = resolve_model(plan.base)
    go_offline_for(source)
    # The embedded GGUF is converted once into the trainers' cache (about a minute on 2 cores).
    source = materialize(source)
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        model = load_causal_lm(source, dtype=dtype, device_map="auto")
    else:
        model = load_causal_lm(source, dtype=torch.float32)
    tokenizer = load_tokenizer(source)
    if not has_chat_template(tokenizer):
        raise ValueError("its tokenizer has no chat template; pick a chat/instruct model")
    if plan.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, plan.adapter)
    model.eval()
    eos = model.generation_config.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    device = model.get_input_embeddings().weight.device
    return LoadedModel(model, tokenizer, frozenset(eos_ids), int(tokenizer.pad_token_id), device)


def load_hf_model(plan: HFModelPlan) -> LoadedModel:
    """The loaded model of a plan, once per process (the generator and an `llm:hf:` judge share it)."""
    with _LOAD_LOCK:
        return _load(plan)


@dataclass(frozen=True)
class _Answer:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str


@dataclass(eq=False)
class _Request:
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float | None
    top_p: float
    seed: int
    stop: tuple[str, ...]
    # Where the answer goes: a future of the caller's event loop (None for a synchronous call).
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future | None = None

    @property
    def sampled(self) -> bool:
        return bool(self.temperature and self.temperature > 0)

    def abandoned(self) -> bool:
        # Read from the compute thread: at worst a request cancelled this instant is answered in vain.
        return self.future is not None and self.future.done()

    def settle(self, outcome: _Answer | BaseException) -> None:
        if self.loop is None or self.future is None:
            return
        future = self.future

        def deliver() -> None:
            if future.done():  # cancelled meanwhile (a timeout, Ctrl-C)
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        # A closed loop refuses the call: its caller is gone and nobody waits for this answer any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(deliver)


class _RowLimits:
    """Stopping criterion: a row is finished once it has its own max_tokens (EOS is generate's job),
    so a batch stops as soon as every row is done instead of running to the largest limit."""

    def __init__(self, prompt_length: int, limits) -> None:
        self.prompt_length = prompt_length
        self.limits = limits

    def __call__(self, input_ids, scores, **kwargs):
        return (input_ids.shape[1] - self.prompt_length) >= self.limits


class _RowSampler:
    """Logits processor for the sampled rows of a batch that is otherwise decoded greedily.

    Each sampled row draws its next token with its own temperature, top-p and torch generator
    (seeded by its request) and leaves only that token possible, so the greedy step picks it. A row's
    draws then depend on its own seed and logits only, not on which other requests shared its batch,
    and greedy and sampled requests share one batch.
    """

    def __init__(self, rows: list[_Request]) -> None:
        self.rows = rows
        self.generators: dict[int, Any] = {}

    def _generator(self, index: int, device):
        import torch

        if index not in self.generators:
            self.generators[index] = torch.Generator(device=device).manual_seed(self.rows[index].seed)
        return self.generators[index]

    def __call__(self, input_ids, scores):
        import torch

        scores = scores.clone()
        for index, row in enumerate(self.rows):
            if not row.sampled:
                continue
            probs = torch.softmax(scores[index].float() / float(row.temperature or 1.0), dim=-1)
            if row.top_p < 1.0:
                ordered, order = probs.sort(descending=True)
                # Keep the most likely tokens until their mass reaches top_p (always at least one).
                keep = (ordered.cumsum(0) - ordered) < row.top_p
                probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
            token = torch.multinomial(probs, 1, generator=self._generator(index, scores.device))
            scores[index] = float("-inf")
            scores[index, token] = 0.0
        return scores


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


# A batch whose prompts share fewer tokens than this at their start reads them all row by row.
MIN_SHARED_PREFIX = 16


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens at the start of every prompt (each row keeps at least one token of its own)."""
    if len(prompts) < 2:
        return 0
    shared = 0
    for column in zip(*prompts, strict=False):
        if any(token != column[0] for token in column):
            break
        shared += 1
    return min(shared, min(len(p) for p in prompts) - 1)


def _cache_argument(model) -> str:
    """transformers 5 calls the KV cache argument `cache`; earlier versions `past_key_values`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _cache_of(layers: list[tuple[Any, Any]] | None = None):
    """A DynamicCache holding the given (keys, values) per layer (empty without them)."""
    from transformers import DynamicCache

    if not layers:
        return DynamicCache()
    if hasattr(DynamicCache, "from_legacy_cache"):  # transformers 4
        return DynamicCache.from_legacy_cache(tuple(layers))
    return DynamicCache(layers)


def _layers_of(cache) -> list[tuple[Any, Any]]:
    if hasattr(cache, "layers"):  # transformers 5
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


def _read(loaded: LoadedModel, tokens: list[int], cache) -> None:
    """Run `tokens` through the model, appending their keys and values to `cache` (positions follow it)."""
    import torch

    ids = torch.tensor([tokens], device=loaded.device)
    loaded.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{_cache_argument(loaded.model): cache})


def _shared_prefix_cache(loaded: LoadedModel, prefix: list[int], rows: int):
    """Padded reading (GPUs): the shared prefix read once, its cache repeated for every row."""
    cache = _cache_of()
    _read(loaded, prefix, cache)
    cache.batch_repeat_interleave(rows)
    return cache


def _row_by_row_cache(loaded: LoadedModel, prefix: list[int], own: list[list[int]]):
    """Row-by-row reading (CPUs): the cache of every prompt but its last token, laid out as the batch.

    The prefix is read once; each row's own tokens but the last are read alone on top of it, with no
    padding to compute; the rows' caches are then stacked with zeros where the mask has padding.
    generate reads the last column, the rows' last tokens, itself and decodes all rows together.
    """
    import torch

    base = _cache_of()
    if prefix:
        _read(loaded, prefix, base)
    shared = _layers_of(base) if prefix else None
    width, n = max(len(o) for o in own), len(prefix)
    per_row = []
    for tokens in own:
        cache = _cache_of(shared)  # the update concatenates: the shared tensors are never written
        if len(tokens) > 1:
            _read(loaded, tokens[:-1], cache)
        per_row.append(_layers_of(cache))
    stacked = []
    for layer in range(len(per_row[0])):
        keys, values = [], []
        for tokens, layers in zip(own, per_row, strict=True):
            for part, out in zip(layers[layer], (keys, values), strict=True):
                filler = part.new_zeros(*part.shape[:2], width - len(tokens), part.shape[-1])
                out.append(torch.cat([part[:, :, :n], filler, part[:, :, n:]], dim=2))
        stacked.append((torch.cat(keys), torch.cat(values)))
    return _cache_of(stacked)


def _plain_layers(config) -> bool:
    """Whether every layer keeps all past keys (no sliding windows): the only caches built here."""
    sliding = any("sliding" in str(kind) for kind in getattr(config, "layer_types", None) or ())
    return not sliding and (
        getattr(config, "sliding_window", None) is None or not getattr(config, "use_sliding_window", True)
    )


def generate_batch(loaded: LoadedModel, requests: list[_Request]) -> list[_Answer]:
    """Answer the requests with one `generate` call (greedy rows and sampled rows alike).

    Rows are laid out `[shared prefix][padding][own tokens]`: evaluate's prompts of one task start
    alike (system prompt, instructions, label list), so that start is read once for the batch. The
    attention mask hides the padding and generate numbers positions from the mask, so every row sees
    exactly its own prompt, at the positions it would have alone.

    How the prompts are read depends on the device. On a GPU the rows are read side by side, padding
    included. On 2 CPU cores (SmolLM2-135M, fp32) reading a prompt is compute-bound at ~1.6 ms a
    token, while each decoding step costs ~65 ms whatever the batch (it reads all 540 MB of weights):
    reading prompts side by side saves little and the padding costs extra (a batch of 16 prompts of
    43 to 230 own tokens was 45 % padding), so each row's own tokens are read alone, and the decoding
    steps, where batching pays, run as a batch.
    """
    import torch
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    from trainers.chat_data import prompt_ids

    tokenizer = loaded.tokenizer
    prompts = [prompt_ids(tokenizer, r.messages) for r in requests]
    shared = shared_prefix_length(prompts)
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    prefix, own = prompts[0][:shared], [p[shared:] for p in prompts]
    width = max(len(o) for o in own)
    pad = loaded.pad_id
    input_ids = torch.tensor([prefix + [pad] * (width - len(o)) + o for o in own], device=loaded.device)
    attention = torch.tensor(
        [[1] * shared + [0] * (width - len(o)) + [1] * len(o) for o in own], device=loaded.device
    )
    limits = torch.tensor([r.max_tokens for r in requests], device=loaded.device)
    config = GenerationConfig(
        max_new_tokens=max(r.max_tokens for r in requests),
        do_sample=False,  # sampled rows are drawn by _RowSampler; the model's own sampling defaults are ignored
        num_beams=1,
        eos_token_id=sorted(loaded.eos_ids),
        pad_token_id=pad,
        use_cache=True,
    )
    sampled = any(r.sampled for r in requests)
    total = shared + width
    with torch.inference_mode():
        plain = _plain_layers(loaded.model.config)
        something_to_cache = bool(prefix) or all(len(o) > 1 for o in own)
        if plain and loaded.device.type == "cpu" and len(own) > 1 and something_to_cache:
            cache = {_cache_argument(loaded.model): _row_by_row_cache(loaded, prefix, own)}
        elif plain and shared:
            cache = {_cache_argument(loaded.model): _shared_prefix_cache(loaded, prefix, len(requests))}
        else:
            cache = {}
        output = loaded.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            generation_config=config,
            logits_processor=LogitsProcessorList([_RowSampler(requests)]) if sampled else None,
            stopping_criteria=StoppingCriteriaList([_RowLimits(total, limits)]),
            **cache,
        )
    answers = []
    for request, prompt, row in zip(requests, prompts, output[:, total:].tolist(), strict=True):
        tokens = row[: request.max_tokens]
        ended = next((i for i, t in enumerate(tokens) if t in loaded.eos_ids), None)
        if ended is not None:
            tokens = tokens[:ended]
        text, stopped = _cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), request.stop)
        reason = "stop" if ended is not None or stopped else "length"
        answers.append(_Answer(text, len(prompt), len(tokens), reason))
    return answers


def _continuation(tokenizer, prompt_text: str, prompt: list[int], option: str) -> list[int]:
    """The option's tokens as they follow the prompt: the rendered prompt and the option tokenised
    together, so the split is the one the model writes (SmolLM2 writes "10" as "1", "0")."""
    whole = list(tokenizer(prompt_text + option, add_special_tokens=False)["input_ids"])
    if len(whole) > len(prompt) and whole[: len(prompt)] == prompt:
        return whole[len(prompt) :]
    # The option's first characters merged with the prompt's last ones: the prompt's tokens are fixed
    # when the model writes, so the option is written on its own.
    return list(tokenizer(option, add_special_tokens=False)["input_ids"])


def option_logprobs(
    loaded: LoadedModel, messages: list[dict[str, str]], options: list[str]
) -> dict[str, float]:
    """log P(the answer starts with the option as a whole word or number) for each option.

    That is log P(option's tokens | prompt) + log P(a boundary token next), plus the tokens that write
    the option's last token and a boundary at once (see option_scoring): "1" then "." counts for "1",
    "1" then "0" does not, and generate's end tokens are boundaries too. The prompt but its last token
    is read once into a cache, repeated for one row per option; each row holds the prompt's last token,
    the option and right padding, so the logits of a row's positions are the next-token distributions
    after the prompt and after each of the option's tokens, and the padding (after every real token)
    changes none of them. The boundary mass is one masked softmax over the whole vocabulary at each
    row's last option position. On 2 CPU cores (SmolLM2-135M, fp32, German WVS prompts) a question took
    0.43-0.50 s with 4 options and 0.53-0.67 s with 10, against 0.76-0.80 s and 2.0-2.1 s for one
    forward pass of whole prompt+option rows; the boundary mass adds no measurable time (Arabic WVS
    prompts on a busy machine: 0.77 s median against 0.78 s for the end token alone).
    """
    import torch

    from trainers.chat_data import prompt_ids, render

    tokenizer = loaded.tokenizer
    boundaries, is_boundary = loaded.answer_boundaries, loaded.boundary_mask
    prompt = prompt_ids(tokenizer, messages)
    prompt_text = render(tokenizer, messages, add_generation_prompt=True)
    continuations = [_continuation(tokenizer, prompt_text, prompt, option) for option in options]
    width = max(len(c) for c in continuations)
    cached = _plain_layers(loaded.model.config) and len(prompt) > 1
    context, own = (prompt[:-1], prompt[-1:]) if cached else ([], prompt)
    rows = [own + c + [loaded.pad_id] * (width - len(c)) for c in continuations]
    with torch.inference_mode():
        extra = {}
        if cached:
            extra[_cache_argument(loaded.model)] = _shared_prefix_cache(loaded, context, len(rows))
        logits = loaded.model(
            input_ids=torch.tensor(rows, device=loaded.device),
            use_cache=bool(cached),
            logits_to_keep=width + 1,  # the prompt's last position and the option's
            **extra,
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        row_ids = torch.arange(len(rows), device=logprobs.device)
        after_options = logprobs[
            row_ids, torch.tensor([len(c) for c in continuations], device=logprobs.device)
        ]
        boundary = torch.logsumexp(after_options.masked_fill(~is_boundary, -torch.inf), dim=-1).tolist()
        scores = {}
        for row, (option, tokens) in enumerate(zip(options, continuations, strict=True)):
            positions = torch.arange(len(tokens), device=logprobs.device)
            steps = logprobs[row, positions, torch.tensor(tokens, device=logprobs.device)].tolist()
            merged_tokens = list(boundaries.merged_with(tokens[-1]))
            merged = (
                float(torch.logsumexp(logprobs[row, len(tokens) - 1, merged_tokens], dim=0))
                if merged_tokens
                else -math.inf
            )
            scores[option] = answer_start_logprob(steps, boundary[row], merged)
    return scores


def _role(message: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")


class HFChat(ScoresAnswerStarts, BaseChatModel):
    """A transformers chat model whose concurrent calls are answered in shared batches."""

    base: str = Field(
        description="The base model: 'local', a cached hub id, a model directory or a .gguf file."
    )
    adapter: str | None = Field(default=None, description="A peft (LoRA) adapter directory on top of base.")
    max_batch: int = Field(default=16, gt=0, description="Most requests answered by one generate call.")
    gather_s: float = Field(
        default=0.2,
        ge=0.0,
        description="How long a batch smaller than the previous one waits for the callers it just answered "
        "(they come back through the runner, the gate and LangChain: ~3 ms each, more on busy cores).",
    )
    max_tokens: int = 384
    temperature: float | None = None  # None or 0: greedy
    top_p: float = 1.0
    seed: int = 0

    _pending: list[_Request] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _last_batch: int = PrivateAttr(default=0)
    _batch_sizes: list[int] = PrivateAttr(default_factory=list)

    @classmethod
    def from_plan(cls, plan: HFModelPlan, **kwargs: Any) -> HFChat:
        return cls(base=plan.base, adapter=plan.adapter, **kwargs)

    @property
    def batch_sizes(self) -> list[int]:
        """Sizes of the batches run so far (benchmarks and tests look at how requests were grouped)."""
        return self._batch_sizes

    @property
    def plan(self) -> HFModelPlan:
        return HFModelPlan(self.base, self.adapter)

    @property
    def _llm_type(self) -> str:
        return "transformers-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base": self.base, "adapter": self.adapter}

    def load(self) -> LoadedModel:
        """Load the model now (a bad model directory, adapter or template fails here, in one line)."""
        try:
            return load_hf_model(self.plan)
        except SpecError:
            raise
        except Exception as exc:  # transformers and peft raise OSError, ValueError, KeyError, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SpecError(f"cannot load hf model {self.plan}: {first}") from None

    async def aload(self) -> LoadedModel:
        return await run_local(self.load)

    def answer_boundaries(self) -> AnswerBoundaries:
        """The loaded model's boundary tokens (built on first use, then kept with the model)."""
        loaded = self.load()
        with LOCAL_COMPUTE:
            return loaded.answer_boundaries

    def _option_logprobs(self, messages: list[dict[str, str]], options: list[str]) -> dict[str, float]:
        loaded = self.load()
        with LOCAL_COMPUTE:
            try:
                return option_logprobs(loaded, messages, options)
            finally:
                release_freed_memory()

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Request:
        temperature = kwargs.get("temperature", self.temperature)
        return _Request(
            messages=[{"role": _role(m), "content": m.text} for m in messages],
            max_tokens=int(kwargs.get("max_tokens") or self.max_tokens),
            temperature=float(temperature) if temperature is not None else None,
            top_p=float(kwargs.get("top_p", self.top_p)),
            seed=int(kwargs.get("seed", self.seed)),
            stop=tuple(stop or ()),
        )

    def _run(self, requests: list[_Request]) -> list[_Answer]:
        loaded = self.load()
        with LOCAL_COMPUTE:
            try:
                return generate_batch(loaded, requests)
            finally:
                release_freed_memory()

    def _take_batch(self) -> list[_Request]:
        """The oldest waiting requests, after a short wait for the callers the last batch answered."""
        deadline = time.monotonic() + self.gather_s
        expected = min(self.max_batch, self._last_batch)
        # Callers that just got their answers come back one by one; without the wait the next batch
        # would hold only the first of them, and batches would alternate between large and tiny.
        while time.monotonic() < deadline:
            with self._lock:
                waiting = sum(1 for r in self._pending if not r.abandoned())
            if waiting == 0 or waiting >= expected:
                break
            time.sleep(0.002)
        with self._lock:
            live = [r for r in self._pending if not r.abandoned()]
            batch, self._pending = live[: self.max_batch], live[self.max_batch :]
        return batch

    def _serve(self) -> None:
        """One turn of the local-compute thread: answer the waiting requests as one batch.

        Every queued request is followed by one such turn, and turns run in order on one thread, so a
        request is answered by its own turn or an earlier one. A turn whose requests were all answered
        already finds the queue empty and returns. Cancelled callers' requests are dropped unanswered.
        """
        batch = self._take_batch()
        if not batch:
            return
        self._last_batch = len(batch)
        self._batch_sizes.append(len(batch))
        try:
            answers: list[_Answer] | None = self._run(batch)
        except Exception as exc:
            answers = None
            for request in batch:
                request.settle(exc)
        for request, answer in zip(batch, answers or (), strict=False):
            request.settle(answer)

    def _result(self, answer: _Answer) -> ChatResult:
        message = AIMessage(
            content=answer.text,
            usage_metadata=UsageMetadata(
                input_tokens=answer.input_tokens,
                output_tokens=answer.output_tokens,
                total_tokens=answer.input_tokens + answer.output_tokens,
            ),
            response_metadata={"finish_reason": answer.finish_reason, "model_name": str(self.plan)},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        # A synchronous call (scripts, tests) is answered alone, in the calling thread.
        return self._result(self._run([self._request(messages, stop, kwargs)])[0])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        loop = asyncio.get_running_loop()
        request = self._request(messages, stop, kwargs)
        request.loop, request.future = loop, loop.create_future()
        with self._lock:
            self._pending.append(request)
        try:
            # No await between queueing and asking for a turn: the turns never fall behind the queue.
            await run_local(self._serve)
            return self._result(await request.future)
        finally:
            # A cancelled caller (timeout, Ctrl-C) marks its request, so a batch not yet begun skips it.
            request.future.cancel()


def hf_structured(schema: Any, attempt: int) -> dict[str, Any]:
    """No constrained decoding for hf: models: the answer is free text and the parsers are lenient."""
    return {}
