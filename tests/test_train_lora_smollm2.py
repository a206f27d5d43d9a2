"""A real LoRA fine-tune of the embedded SmolLM2-135M-Instruct on CPU, through the `train` command."""

from __future__ import annotations

import json

import pytest

from cli import main
from tests.train_helpers import QUESTIONS, SYSTEM, smollm2_model_dir, write_dataset_dir

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def cli(argv: list[str]) -> int:
    return main(["train", *argv])


def test_lora_finetune_lowers_the_loss_and_the_saved_adapter_generates(tmp_path):
    import torch
    from peft import PeftModel

    from trainers.local_model import ModelSource, generate_reply, load_causal_lm, load_tokenizer

    torch.set_num_threads(2)
    data = write_dataset_dir(tmp_path / "data", n_train=16, n_val=4)
    out = tmp_path / "run"

    code = cli(
        [
            "--base-model",
            "local",
            "--data",
            str(data),
            "--max-steps",
            "6",
            "--batch-size",
            "4",
            "--learning-rate",
            "2e-3",
            "--warmup-ratio",
            "0",
            "--lr-scheduler",
            "constant",
            "--max-seq-length",
            "128",
            "--no-gradient-checkpointing",
            "--output-dir",
            str(out),
        ]
    )

    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    losses = [p["loss"] for p in summary["loss_curve"] if "loss" in p]
    print(
        f"\nLoRA SmolLM2 loss per step: {[round(x, 3) for x in losses]}, eval {summary['eval_loss']:.3f}, "
        f"{summary['tokens_per_second']} tokens/s, {summary['train_runtime_s']} s"
    )
    assert summary["steps"] == 6 and len(losses) == 6
    assert sum(losses[-2:]) / 2 < 0.6 * sum(losses[:2]) / 2
    assert summary["prompt_mismatches"] == 0 and summary["tokens_seen"] > 0 and summary["peak_memory_gb"] > 0
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert json.loads((out / "loss_curve.json").read_text()) == summary["loss_curve"]
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()

    # Load the saved adapter with peft onto a fresh base model and generate with the training template.
    tokenizer = load_tokenizer(ModelSource(str(adapter)))
    base = load_causal_lm(ModelSource(str(smollm2_model_dir())), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    question, answer = QUESTIONS[0]
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]

    tuned = generate_reply(model, tokenizer, messages, max_new_tokens=12)
    with model.disable_adapter():
        untuned = generate_reply(model, tokenizer, messages, max_new_tokens=12)

    print(f"base model: {untuned!r}; with adapter: {tuned!r}")
    assert tuned.startswith("Option")  # the trained answer format
    assert tuned != untuned
