"""A real DeepSpeed ZeRO-3 run: two CPU ranks (gloo) launched by the project's launcher with torchrun."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.train_helpers import write_dataset_dir, write_tiny_llama
from trainers import launcher
from trainers.config import TrainConfig

pytestmark = pytest.mark.slow

# Two ranks on two cores take about half a minute; anything near this limit is a hang.
TIMEOUT_S = 240


def test_zero3_two_process_run_saves_whole_weights(tmp_path):
    from safetensors.torch import load_file

    model_dir = write_tiny_llama(tmp_path / "tiny-llama")
    data = write_dataset_dir(tmp_path / "data", n_train=16, n_val=4)
    config = TrainConfig(
        base_model=str(model_dir),
        data=data,
        method="full",
        launcher="torchrun",
        num_gpus=2,
        zero=3,
        max_steps=4,
        batch_size=2,
        learning_rate=1e-3,
        gradient_checkpointing=False,
        output_dir=tmp_path / "run",
        master_port=29500 + os.getpid() % 1000,
    )

    plan = launcher.prepare(config)
    started = time.perf_counter()
    # run() puts the ranks in their own process group and kills the whole group on a timeout.
    code = launcher.run(plan, timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - started
    print(f"\nZeRO-3, 2 CPU ranks: {elapsed:.1f} s wall for `{plan.shell()}`")

    assert code == 0
    summary = json.loads((config.output_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["deepspeed_stage"] == 3 and summary["steps"] == 4
    saved = load_file(str(config.output_dir / "model" / "model.safetensors"))
    initial = load_file(str(model_dir / "model.safetensors"))
    # Whole: every tensor saved at its full shape (a ZeRO-3 save without the 16-bit gather writes
    # each rank's empty placeholders), and trained: every one of them moved.
    assert saved.keys() == initial.keys()
    for name, tensor in initial.items():
        assert saved[name].shape == tensor.shape, name
        assert saved[name].numel() > 0
        assert not saved[name].equal(tensor), f"{name} did not train"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(config.output_dir / "model"))  # loads as an ordinary model
