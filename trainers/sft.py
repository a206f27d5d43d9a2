"""Supervised fine-tuning on chat data: transformers Trainer + peft, one process or one rank of many.

In-process runs call `train(config)`; launched ranks run `python -m trainers.sft --config FILE`.
Order matters under ZeRO-3: the TrainingArguments (which carry the DeepSpeed config) are built before
the model is loaded, so that from_pretrained partitions the weights across ranks while loading
instead of materialising the whole model on every rank first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from trainers.config import TrainConfig, UserError, build_config, load_config_file
from trainers.local_model import (
    base_model_errors,
    go_offline_for,
    hub_off_by_default,
    materialize,
    require_available,
    resolve_model,
)
from trainers.summary import TrainSummary, loss_curve, peak_memory, write_summary

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class ListDataset:
    """Pre-tokenized rows; the Trainer only needs len() and indexing."""

    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _log(text: str) -> None:
    if _rank() == 0:
        print(text, file=sys.stderr, flush=True)


def checkpoint_to_resume(config: TrainConfig) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(config.output_dir)) if config.output_dir.is_dir() else None
    if config.resume:
        if last is None:
            raise UserError(
                f"--resume: no checkpoint-* directory in {str(config.output_dir)!r} to resume from"
            )
        return last
    if last is not None:
        raise UserError(
            f"{str(config.output_dir)!r} already holds {Path(last).name}; pass --resume to continue it "
            "or choose another --output-dir"
        )
    return None


def quantization_config(config: TrainConfig, compute: str, stage: int):
    import torch
    from transformers import BitsAndBytesConfig

    from trainers.preflight import quant_storage_name

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, TORCH_DTYPES[compute]),
        # ZeRO-3 shards parameters of one dtype; the packed 4-bit bytes must be stored in the compute
        # dtype for it to flatten and partition them alongside the rest.
        bnb_4bit_quant_storage=getattr(torch, quant_storage_name(config, stage, compute)),
    )


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _cpu_deepspeed_state() -> None:
    """Let DeepSpeed run on CPU ranks (gloo), as the ZeRO-3 test does on a machine without GPUs.

    accelerate wires DeepSpeed up only for accelerator devices: on CPU it leaves the backend unset and
    then counts a single process, so DeepSpeed's batch-size check fails. Setting up its shared state
    ourselves with gloo, before TrainingArguments reuses it, gives both the right world size.
    """
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(backend="gloo")


def training_arguments(config: TrainConfig, compute: str, cuda: bool, has_eval: bool, ds_path: Path | None):
    from transformers import TrainingArguments

    evaluate_during = has_eval and config.eval_steps is not None
    # transformers 5.x renamed gradient_checkpointing to activation_checkpointing; the old name warns.
    prefix = (
        "activation" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ else "gradient"
    )
    checkpointing = {f"{prefix}_checkpointing": config.gradient_checkpointing}
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs (LoRA) and with ZeRO-3's hooks.
        checkpointing[f"{prefix}_checkpointing_kwargs"] = {"use_reentrant": False}
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return TrainingArguments(
        output_dir=str(config.output_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_epochs or 1.0,
        max_steps=config.max_steps or -1,  # transformers' "run the epochs"
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        bf16=compute == "bf16",
        fp16=compute == "fp16",
        # DeepSpeed brings its own CPU accelerator (gloo); use_cpu would bypass DeepSpeed entirely.
        use_cpu=not cuda and ds_path is None,
        **checkpointing,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if evaluate_during else "no",
        eval_steps=config.eval_steps if evaluate_during else None,
        seed=config.seed,
        report_to="none",
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        deepspeed=str(ds_path) if ds_path else None,
        ddp_backend=None if cuda or not distributed else "gloo",
        accelerator_config={"use_configured_state": True} if ds_path is not None and not cuda else None,
        disable_tqdm=not sys.stderr.isatty(),
    )


def train(config: TrainConfig, show_report: bool = True) -> TrainSummary | None:
    """Fine-tune and save; returns the summary on the main process (None on other ranks)."""
    source = require_available(config.base_model)
    go_offline_for(source)

    import torch
    from transformers import set_seed

    from trainers import preflight
    from trainers.chat_data import ChatCollator, encode_conversations, load_chat_data
    from trainers.deepspeed_configs import load_ds_config, source_config_path, zero_stage
    from trainers.local_model import load_causal_lm, load_tokenizer

    if config.data is None:
        raise UserError("--data is required")
    cuda = torch.cuda.is_available()
    compute = preflight.compute_dtype_name(config, cuda, cuda and torch.cuda.is_bf16_supported())
    ds_path = source_config_path(config)
    stage = zero_stage(load_ds_config(ds_path)) if ds_path else 0
    if config.method == "qlora" and not cuda:
        raise UserError("--method qlora needs a CUDA GPU (bitsandbytes 4-bit); use --method lora on CPU")
    resume_from = checkpoint_to_resume(config)

    set_seed(config.seed)
    with base_model_errors(config.base_model):
        source = materialize(source)
        tokenizer = load_tokenizer(source)
    report = preflight.check(config, tokenizer=tokenizer)
    if show_report:
        _log(report.render())

    splits = load_chat_data(config.data, config.validation_data)
    train_rows, stats = encode_conversations(tokenizer, splits.train, config.max_seq_length)
    val_rows, _ = (
        encode_conversations(tokenizer, splits.validation, config.max_seq_length)
        if splits.validation
        else (None, None)
    )
    _log(
        f"data: {stats.examples} training conversations from {splits.train_source} "
        f"({stats.tokens} tokens, {stats.label_tokens} trained), {len(val_rows or [])} validation; "
        f"{stats.truncated} truncated, {stats.dropped_no_labels} dropped"
    )

    if ds_path is not None and not cuda:
        _cpu_deepspeed_state()
    args = training_arguments(config, compute, cuda, bool(val_rows), ds_path)

    model_kwargs = {}
    if config.method == "qlora":
        model_kwargs["quantization_config"] = quantization_config(config, compute, stage)
        if stage != 3:
            # bitsandbytes places 4-bit weights at load time; each rank loads onto its own GPU.
            model_kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    with base_model_errors(config.base_model):
        model = load_causal_lm(source, dtype=getattr(torch, TORCH_DTYPES[compute]), **model_kwargs)
    model.config.use_cache = False  # the KV cache is useless in training and conflicts with checkpointing

    if config.method in ("lora", "qlora"):
        from peft import get_peft_model, prepare_model_for_kbit_training

        if config.method == "qlora":
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=config.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        model = get_peft_model(model, lora_config(config))
        if _rank() == 0:
            trainable, total = model.get_nb_trainable_parameters()
            _log(f"lora: {trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%)")

    from transformers import Trainer

    trainer = Trainer(
        model=model,
        args=args,
        data_collator=ChatCollator(tokenizer.pad_token_id),
        train_dataset=ListDataset(train_rows),
        eval_dataset=ListDataset(val_rows) if val_rows else None,
        processing_class=tokenizer,
    )
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    runtime = time.perf_counter() - started
    eval_loss = trainer.evaluate().get("eval_loss") if val_rows else None

    out = config.output_dir
    adapter_dir = model_dir = merged_dir = None
    save_dir = out / ("model" if config.method == "full" else "adapter")
    # Training turned the KV cache off; whoever loads the saved model wants it back for generation.
    model.config.use_cache = True
    # save_model gathers ZeRO-3 shards (stage3_gather_16bit_weights_on_model_save) and writes on rank 0.
    trainer.save_model(str(save_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(save_dir)
    if config.method == "full":
        model_dir = str(save_dir)
    else:
        adapter_dir = str(save_dir)
    trainer.accelerator.wait_for_everyone()

    if not trainer.is_world_process_zero():
        return None
    if config.merge and adapter_dir and config.launcher == "none":
        # Launched ranks live inside DeepSpeed's partitioning context; the launching process merges
        # after they exit (merge_run), where the base model loads as an ordinary CPU model.
        merged_dir = str(merge_adapter(source, Path(adapter_dir), out / "merged", compute, tokenizer))

    history = trainer.state.log_history
    curve = loss_curve(history)
    losses = [p["loss"] for p in curve if "loss" in p]
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    # The Trainer's own clock excludes model set-up (DeepSpeed engine, data loaders).
    train_runtime = float(result.metrics.get("train_runtime", runtime))
    peak, peak_kind = peak_memory()
    summary = TrainSummary(
        base_model=config.base_model,
        method=config.method,
        steps=int(trainer.state.global_step),
        epochs=float(trainer.state.epoch or 0.0),
        train_runtime_s=round(train_runtime, 3),
        tokens_seen=tokens,
        tokens_per_second=round(tokens / train_runtime, 2) if train_runtime > 0 else 0.0,
        first_loss=losses[0] if losses else None,
        final_loss=losses[-1] if losses else None,
        eval_loss=float(eval_loss) if eval_loss is not None else None,
        peak_memory_gb=round(peak, 3),
        peak_memory_kind=peak_kind,
        train_examples=stats.examples,
        validation_examples=len(val_rows or []),
        dropped_examples=stats.dropped_no_labels,
        truncated_examples=stats.truncated,
        prompt_mismatches=stats.prompt_mismatches,
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        deepspeed_stage=stage,
        adapter_dir=adapter_dir,
        model_dir=model_dir,
        merged_dir=merged_dir,
        resumed_from=resume_from,
        loss_curve=curve,
    )
    path = write_summary(summary, out)
    _log(
        f"done: {summary.steps} steps, loss {summary.first_loss} -> {summary.final_loss}, "
        f"{summary.tokens_per_second} tokens/s, peak {summary.peak_memory_gb} GiB ({peak_kind}); "
        f"saved {adapter_dir or model_dir}; summary {path}"
    )
    return summary


def merge_adapter(source, adapter_dir: Path, target: Path, compute: str, tokenizer) -> Path:
    """Fold the adapter into a fresh 16-bit (fp32 on CPU) copy of the base model.

    The base is reloaded unquantized on the CPU: merging into 4-bit QLoRA weights would round the
    update away, and the CPU is the one place a 70B model's 16-bit copy fits next to a GPU job.
    """
    import torch
    from peft import PeftModel

    from trainers.local_model import load_causal_lm

    dtype = torch.float32 if compute == "fp32" else getattr(torch, TORCH_DTYPES[compute])
    base = load_causal_lm(source, dtype=dtype, device_map="cpu")
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def merge_run(config: TrainConfig) -> Path:
    """Merge a finished launched run's adapter into its base model and note it in summary.json."""
    import json

    import torch

    from trainers import preflight
    from trainers.local_model import load_tokenizer

    adapter_dir = config.output_dir / "adapter"
    if not (adapter_dir / "adapter_config.json").is_file():
        raise UserError(f"--merge: no adapter in {str(adapter_dir)!r}")
    source = resolve_model(config.base_model)
    go_offline_for(source)
    source = materialize(source)
    cuda = torch.cuda.is_available()
    compute = preflight.compute_dtype_name(
        config.model_copy(update={"dry_run": False}), cuda, cuda and torch.cuda.is_bf16_supported()
    )
    target = merge_adapter(
        source,
        adapter_dir,
        config.output_dir / "merged",
        compute,
        load_tokenizer(type(source)(str(adapter_dir))),
    )
    summary_path = config.output_dir / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        summary["merged_dir"] = str(target)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    """Entry point of a launched rank: `python -m trainers.sft --config RUN_DIR/train_config.yaml`."""
    parser = argparse.ArgumentParser(prog="python -m trainers.sft", description=main.__doc__)
    parser.add_argument(
        "--config", type=Path, required=True, help="train_config.yaml written by the launcher"
    )
    args = parser.parse_args(argv)
    # A rank started by hand from launch_command.sh is as offline as one started by cli.py.
    hub_off_by_default()
    try:
        config = build_config(load_config_file(args.config), {})
        train(config, show_report=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
