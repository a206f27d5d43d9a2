"""Refuse known-bad training setups before any GPU time is spent.

Everything here works offline and without loading weights: model facts come from a local config.json,
a GGUF header, the local HF cache, or, for hub ids that are not on this machine, a table of known
sizes keyed by the name ("70b", "8x7b", ...). A refusal names the problem and the flag that fixes it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from trainers.config import TrainConfig, UserError
from trainers.deepspeed_configs import gathers_16bit_on_save, load_ds_config, source_config_path, zero_stage
from trainers.local_model import ModelSource, gguf_cache_dir, resolve_model

GB = 1024**3
# CUDA context, NCCL buffers and allocator fragmentation: what a GPU loses before the model arrives.
GPU_OVERHEAD_GB = 1.5
# DeepSpeed's default stage3_max_live_parameters: the most parameters ZeRO-3 gathers on a GPU at once.
ZERO3_MAX_LIVE_PARAMS = 1e9
# 4-bit NF4 weight plus double-quantized block constants (about 0.13 bit), with 16-bit embeddings and
# norms mixed in: measured models land near 0.55 bytes per parameter.
QLORA_BYTES_PER_PARAM = 0.55


class PreflightError(UserError):
    """One or more refusals; the message says why and what to do."""


@dataclass(frozen=True)
class KnownSize:
    params: float
    hidden: int
    layers: int
    vocab: int = 32000


# Keyed by the size token in hub ids; used only when no config is available offline.
KNOWN_SIZES: dict[str, KnownSize] = {
    "135m": KnownSize(134.5e6, 576, 30, 49152),
    "360m": KnownSize(361.8e6, 960, 32, 49152),
    "0.5b": KnownSize(494e6, 896, 24, 151936),
    "1b": KnownSize(1.24e9, 2048, 16, 128256),
    "1.1b": KnownSize(1.1e9, 2048, 22, 32000),
    "1.5b": KnownSize(1.54e9, 1536, 28, 151936),
    "1.7b": KnownSize(1.71e9, 2048, 24, 49152),
    "3b": KnownSize(3.21e9, 3072, 28, 128256),
    "7b": KnownSize(6.74e9, 4096, 32, 32000),
    "8b": KnownSize(8.03e9, 4096, 32, 128256),
    "13b": KnownSize(13.0e9, 5120, 40, 32000),
    "14b": KnownSize(14.8e9, 5120, 48, 152064),
    "32b": KnownSize(32.8e9, 5120, 64, 152064),
    "34b": KnownSize(33.7e9, 8192, 48, 32000),
    "8x7b": KnownSize(46.7e9, 4096, 32, 32000),
    "65b": KnownSize(65.3e9, 8192, 80, 32000),
    "70b": KnownSize(69.0e9, 8192, 80, 32000),
    "72b": KnownSize(72.7e9, 8192, 80, 152064),
    "8x22b": KnownSize(141e9, 6144, 56, 32768),
    "405b": KnownSize(405.9e9, 16384, 126, 128256),
}


@dataclass
class ModelFacts:
    name: str
    params: float
    hidden: int
    layers: int
    vocab: int
    source: str  # where the numbers came from, shown to the user
    quant_method: str | None = None  # gptq / awq / bitsandbytes / ... for pre-quantized checkpoints
    has_chat_template: bool | None = None  # None: could not be checked offline


def _size_from_name(name: str) -> tuple[str, KnownSize] | None:
    lowered = name.lower()
    for token in sorted(KNOWN_SIZES, key=len, reverse=True):
        if re.search(rf"(?<![\d.x]){re.escape(token)}(?![a-z0-9])", lowered):
            return token, KNOWN_SIZES[token]
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])", lowered)
    if not match:
        return None
    params = float(match.group(1)) * (1e9 if match.group(2) == "b" else 1e6)
    # Transformer blocks hold about 12*h^2 parameters each; assume the usual depth-for-width ratio.
    layers = max(12, min(128, round(32 * (params / 7e9) ** 0.3)))
    hidden = int((params / (12 * layers)) ** 0.5) // 64 * 64 or 64
    return match.group(0), KnownSize(params, hidden, layers)


def _quant_method_from_name(name: str) -> str | None:
    lowered = name.lower()
    for method in ("gptq", "awq"):
        if method in lowered:
            return method
    return None


def _facts_from_hf_config(name: str, directory: Path | None) -> ModelFacts | None:
    """Exact parameter count by building the model on the meta device (no memory, no download)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        return None
    try:
        cfg = AutoConfig.from_pretrained(str(directory) if directory else name, local_files_only=True)
    except (OSError, ValueError):
        return None
    quant = getattr(cfg, "quantization_config", None)
    quant_method = (
        quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    )
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
        params = float(sum(p.numel() for p in model.parameters()))
    except Exception:  # noqa: BLE001 - unknown architectures fall back to the name table
        return None
    return ModelFacts(
        name=name,
        params=params,
        hidden=int(getattr(text_cfg, "hidden_size", 0) or 0),
        layers=int(getattr(text_cfg, "num_hidden_layers", 0) or 0),
        vocab=int(getattr(text_cfg, "vocab_size", 0) or 0),
        source="config.json" if directory else "local HF cache",
        quant_method=str(quant_method).lower() if quant_method else None,
    )


def _local_dir_has_chat_template(directory: Path) -> bool:
    if (directory / "chat_template.jinja").is_file() or (directory / "chat_template.json").is_file():
        return True
    tok_cfg = directory / "tokenizer_config.json"
    if tok_cfg.is_file():
        try:
            return bool(json.loads(tok_cfg.read_text(encoding="utf-8")).get("chat_template"))
        except json.JSONDecodeError:
            return False
    return False


def _facts_from_gguf(source: ModelSource, name: str) -> ModelFacts:
    from gguf import GGUFReader

    reader = GGUFReader(str(Path(source.name_or_path) / (source.gguf_file or "")))

    def field_value(key: str):
        fld = reader.fields.get(key)
        return None if fld is None else fld.contents()

    arch = field_value("general.architecture") or "llama"
    params = float(sum(int(t.n_elements) for t in reader.tensors))
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return ModelFacts(
        name=name,
        params=params,
        hidden=int(field_value(f"{arch}.embedding_length") or 0),
        layers=int(field_value(f"{arch}.block_count") or 0),
        vocab=len(tokens.data) if tokens is not None else 0,
        source=f"GGUF header of {source.gguf_file}",
        has_chat_template=bool(field_value("tokenizer.chat_template")),
    )


def model_facts(spec: str) -> ModelFacts:
    """Size and properties of the base model, found without downloading anything."""
    source = resolve_model(spec)
    if source.gguf_file:
        cached = gguf_cache_dir(source)
        if not (cached / "source.json").is_file():
            return _facts_from_gguf(source, spec)
        # The converted copy answers in milliseconds; the GGUF header parse takes seconds.
        source = ModelSource(str(cached))
    directory = Path(source.name_or_path) if source.is_local else None
    if directory is not None and not (directory / "config.json").is_file():
        raise UserError(f"--base-model {spec!r} is a directory without config.json")
    facts = _facts_from_hf_config(spec, directory)
    if facts is not None:
        if directory is not None:
            facts.has_chat_template = _local_dir_has_chat_template(directory)
        return facts
    if directory is not None:
        raise UserError(f"--base-model {spec!r}: transformers cannot read its config.json")
    guess = _size_from_name(spec)
    if guess is None:
        raise UserError(
            f"--base-model {spec!r} is not on this machine and its name carries no size (like 7b or 70b); "
            "download it first or pass a local directory"
        )
    token, size = guess
    return ModelFacts(
        name=spec,
        params=size.params,
        hidden=size.hidden,
        layers=size.layers,
        vocab=size.vocab,
        source=f"known size for '{token}' in the name (model not available offline)",
        quant_method=_quant_method_from_name(spec),
    )


def compute_dtype_name(config: TrainConfig, cuda_available: bool, bf16_supported: bool) -> str:
    """fp32 / bf16 / fp16 for this run; a dry run is planned for a GPU box, so 'auto' means bf16 there."""
    if config.precision != "auto":
        return config.precision
    if cuda_available:
        return "bf16" if bf16_supported else "fp16"
    return "bf16" if config.dry_run else "fp32"


def quant_storage_name(config: TrainConfig, stage: int, compute: str) -> str:
    if config.bnb_4bit_quant_storage != "auto":
        return config.bnb_4bit_quant_storage
    return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[compute] if stage == 3 else "uint8"


@dataclass
class MemoryEstimate:
    setup: str
    gpu_gb: float  # per GPU
    cpu_gb: float  # per node, for offloaded state
    parts: dict[str, float] = field(default_factory=dict)


def lora_trainable_params(facts: ModelFacts, r: int) -> float:
    # Adapters on every linear of a block: attention (4 x 2hr) and MLP (3 x (h + ~2.7h) r) ~ 19 h r.
    return 19.0 * facts.hidden * r * facts.layers


def estimate_memory(
    facts: ModelFacts,
    config: TrainConfig,
    zero: int,
    offload: bool,
    compute: str,
) -> MemoryEstimate:
    """Per-GPU and per-node bytes for weights, gradients, AdamW state and activations (in GiB).

    Mixed-precision AdamW keeps 16 bytes per trained parameter (16-bit weight and gradient, fp32
    master copy and two moments); fp32 training also comes to 16 (4 + 4 + 8). Frozen LoRA weights cost
    their storage size only. ZeRO-2 shards gradients and optimizer state, ZeRO-3 the weights too, and
    offload moves all sharded state to host RAM, leaving the GPU the gathered layer and activations.
    """
    world, nodes = config.world_size, config.num_nodes
    wbytes = 4 if compute == "fp32" else 2
    p = facts.params
    if config.method == "full":
        trainable, frozen_bytes = p, 0.0
    else:
        trainable = min(p, lora_trainable_params(facts, config.lora_r))
        per_param = QLORA_BYTES_PER_PARAM if config.method == "qlora" else wbytes
        frozen_bytes = (p - trainable) * per_param
    train_w, train_g = trainable * wbytes, trainable * wbytes
    train_opt = trainable * (16 - 2 * wbytes)

    b, s, h, layers = config.batch_size, config.max_seq_length, max(facts.hidden, 1), max(facts.layers, 1)
    abytes = 2 if compute != "fp32" else 4
    per_layer = 17 * b * s * h * abytes  # ~34 bytes per token-hidden unit in 16-bit (Korthikanti et al.)
    if config.gradient_checkpointing:
        activations = layers * b * s * h * abytes + per_layer
    else:
        activations = layers * per_layer
    logits = 2 * b * s * max(facts.vocab, 1) * 4  # fp32 logits and their gradient for the loss

    parts: dict[str, float] = {}
    cpu = 0.0
    if zero == 0:
        parts["weights"] = (frozen_bytes + train_w) / GB
        parts["grads+optimizer"] = (train_g + train_opt) / GB
        setup = "no ZeRO (each GPU holds everything)"
    elif zero == 1:
        parts["weights+grads"] = (frozen_bytes + train_w + train_g) / GB
        parts["optimizer (sharded)"] = train_opt / world / GB
        setup = "ZeRO-1"
    elif zero == 2:
        parts["weights"] = (frozen_bytes + train_w) / GB
        parts["grads+optimizer (sharded)"] = (train_g + train_opt) / world / GB
        setup = "ZeRO-2"
    else:
        live_bytes = min(p, ZERO3_MAX_LIVE_PARAMS) * (
            QLORA_BYTES_PER_PARAM if config.method == "qlora" else wbytes
        )
        parts["gathered layer weights"] = live_bytes / GB
        sharded = (frozen_bytes + train_w + train_g + train_opt) / world
        if offload:
            cpu = sharded * (world / nodes) / GB
            setup = "ZeRO-3 + CPU offload"
        else:
            parts["weights+grads+optimizer (sharded)"] = sharded / GB
            setup = "ZeRO-3"
    parts["activations"] = (activations + logits) / GB
    parts["overhead"] = GPU_OVERHEAD_GB
    return MemoryEstimate(setup=setup, gpu_gb=sum(parts.values()), cpu_gb=cpu, parts=parts)


def _host_memory_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        return None


def _count(params: float) -> str:
    return f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.1f}M"


@dataclass
class PreflightReport:
    facts: ModelFacts | None
    compute: str
    stage: int
    estimates: list[MemoryEstimate] = field(default_factory=list)
    chosen: MemoryEstimate | None = None
    notes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = []
        if self.facts:
            f = self.facts
            lines.append(
                f"preflight: {f.name}: {_count(f.params)} parameters, hidden {f.hidden}, "
                f"{f.layers} layers ({f.source})"
            )
        for est in self.estimates:
            mark = "->" if est is self.chosen else "  "
            cpu = f", host RAM {est.cpu_gb:,.1f} GiB per node" if est.cpu_gb else ""
            lines.append(f"  {mark} {est.setup:<38} ~{est.gpu_gb:,.1f} GiB per GPU{cpu}")
        if self.chosen:
            detail = ", ".join(f"{k} {v:,.1f}" for k, v in self.chosen.parts.items())
            lines.append(f"     chosen setup, GiB per GPU: {detail}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _fits(est: MemoryEstimate, config: TrainConfig, host_gb: float | None) -> bool:
    if est.gpu_gb > config.gpu_memory_gb:
        return False
    return not (est.cpu_gb and host_gb is not None and est.cpu_gb > host_gb)


def _fix_for_size(config: TrainConfig, alternatives: list[tuple[int, bool, MemoryEstimate]], host_gb) -> str:
    for zero, offload, est in alternatives:
        if _fits(est, config, host_gb):
            flags = f"--launcher deepspeed --zero {zero}" + (" --offload" if offload else "")
            return f"{est.setup} would fit (~{est.gpu_gb:,.1f} GiB per GPU): use {flags}"
    hints = []
    if config.method != "qlora":
        hints.append("--method qlora")
    hints += ["more GPUs (--num-gpus/--num-nodes)", "a smaller --batch-size or --max-seq-length"]
    if not config.gradient_checkpointing:
        hints.insert(0, "--gradient-checkpointing")
    return "it does not fit even with ZeRO-3 + CPU offload: try " + ", ".join(hints)


def run_preflight(
    config: TrainConfig,
    tokenizer=None,
    cuda_available: bool | None = None,
    bf16_supported: bool | None = None,
) -> PreflightReport:
    """Collect every refusal for this config (and tokenizer, once loaded); never downloads anything."""
    if cuda_available is None or bf16_supported is None:
        import torch

        cuda_available = torch.cuda.is_available()
        bf16_supported = cuda_available and torch.cuda.is_bf16_supported()
    compute = compute_dtype_name(config, cuda_available, bf16_supported)

    ds_path = source_config_path(config)
    ds = load_ds_config(ds_path) if ds_path else {}
    stage = zero_stage(ds) if ds_path else 0
    report = PreflightReport(facts=None, compute=compute, stage=stage)
    refuse = report.refusals.append

    if config.method == "qlora" and stage == 3:
        storage = quant_storage_name(config, stage, compute)
        wanted = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[compute]
        if storage != wanted:
            refuse(
                f"QLoRA under ZeRO-3 with 4-bit weights stored as {storage}: ZeRO-3 can only shard "
                f"parameters of the compute dtype ({wanted}); use --bnb-4bit-quant-storage auto "
                f"(or {wanted})"
            )

    if stage == 3 and not gathers_16bit_on_save(ds):
        refuse(
            f"DeepSpeed config {str(ds_path)!r} is ZeRO-3 without "
            "stage3_gather_16bit_weights_on_model_save: the saved model would hold each rank's empty "
            "shards instead of whole weights; set it to true (the shipped configs/ds_zero3*.json do)"
        )

    facts = model_facts(config.base_model)
    report.facts = facts

    if facts.quant_method in ("gptq", "awq"):
        if stage == 3:
            refuse(
                f"{config.base_model!r} is pre-quantized ({facts.quant_method}) and ZeRO-3 cannot partition "
                "its packed integer weights; use --zero 2 (or no DeepSpeed) with --method lora, or the "
                "unquantized model with --method qlora"
            )
        if config.method in ("full", "qlora"):
            refuse(
                f"{config.base_model!r} is pre-quantized ({facts.quant_method}); --method {config.method} "
                "cannot train it: use --method lora"
            )

    if tokenizer is not None:
        facts.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if facts.has_chat_template is False:
        refuse(
            f"the tokenizer of {config.base_model!r} has no chat template, so training and inference "
            "prompts cannot be built the same way; use the chat/instruct variant of the model or add a "
            "chat_template to its tokenizer_config.json"
        )
    elif facts.has_chat_template is None:
        report.notes.append(
            "chat template not checked: the tokenizer is not on this machine (checked at start)"
        )

    host_gb = config.cpu_memory_gb or (None if config.dry_run else _host_memory_gb())
    chosen_offload = bool(ds) and any(
        str(ds.get("zero_optimization", {}).get(k, {}).get("device", "none")) != "none"
        for k in ("offload_param", "offload_optimizer")
    )
    options = [(0, False), (2, False), (3, False), (3, True)]
    alternatives = []
    for zero, offload in options:
        est = estimate_memory(facts, config, zero, offload, compute)
        report.estimates.append(est)
        if zero == stage and offload == (chosen_offload and stage == 3):
            report.chosen = est
        if zero == 3:
            alternatives.append((zero, offload, est))
    if report.chosen is None:
        report.chosen = estimate_memory(facts, config, stage, chosen_offload, compute)
        report.estimates.append(report.chosen)

    if config.dry_run or cuda_available:
        if not _fits(report.chosen, config, host_gb):
            need = f"~{report.chosen.gpu_gb:,.1f} GiB per GPU"
            if report.chosen.cpu_gb:
                need += f" and ~{report.chosen.cpu_gb:,.1f} GiB host RAM per node"
            have = f"{config.gpu_memory_gb:g} GiB GPUs" + (
                f", {host_gb:,.0f} GiB host RAM" if host_gb else ""
            )
            refuse(
                f"{config.base_model!r} ({_count(facts.params)}, --method {config.method}) with "
                f"{report.chosen.setup} on {config.world_size} GPU(s) needs {need}, more than the declared "
                f"{have}; {_fix_for_size(config, alternatives, host_gb)}"
            )
        if host_gb is None and report.chosen.cpu_gb:
            report.notes.append("host RAM for offload not checked: pass --cpu-memory-gb to check it")
    else:
        report.notes.append("no CUDA GPU here: the GPU memory estimate is shown, not enforced")
    return report


def check(config: TrainConfig, tokenizer=None, **kwargs) -> PreflightReport:
    """Run the preflight and raise PreflightError with every refusal joined into one message."""
    report = run_preflight(config, tokenizer=tokenizer, **kwargs)
    if report.refusals and not config.skip_preflight:
        raise PreflightError("preflight refused: " + " | ".join(report.refusals))
    return report
