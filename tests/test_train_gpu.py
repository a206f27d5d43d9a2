"""QLoRA settings, and the GPU-only paths: bitsandbytes 4-bit training and a real 70B ZeRO-3 launch.

The GPU tests skip on machines without CUDA. The 70B launch also needs 8 GPUs and the model on disk:
CULTURE_FORGE_LLAMA70B=/path/to/Llama-2-70b-chat-hf.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.train_helpers import write_dataset_dir, write_tiny_llama
from trainers.config import TrainConfig


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


needs_gpu = pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")


@pytest.mark.parametrize(("stage", "storage"), [(3, "bfloat16"), (2, "uint8"), (0, "uint8")])
def test_qlora_is_nf4_with_double_quantization_and_zero3_storage(stage, storage):
    import torch

    from trainers.sft import quantization_config

    q = quantization_config(TrainConfig(data=Path("d"), method="qlora"), "bf16", stage)
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert q.bnb_4bit_quant_storage == getattr(torch, storage)


@pytest.mark.gpu
@needs_gpu
def test_qlora_trains_a_4bit_model_on_one_gpu(tmp_path):
    import bitsandbytes as bnb
    import torch

    from trainers.local_model import ModelSource, load_causal_lm
    from trainers.sft import quantization_config, train

    model_dir = write_tiny_llama(tmp_path / "tiny")
    config = TrainConfig(
        base_model=str(model_dir),
        data=write_dataset_dir(tmp_path / "data"),
        method="qlora",
        max_steps=3,
        batch_size=2,
        output_dir=tmp_path / "run",
    )
    quantized = load_causal_lm(
        ModelSource(str(model_dir)),
        dtype=torch.bfloat16,
        quantization_config=quantization_config(config, "bf16", 0),
        device_map={"": 0},
    )
    layer = quantized.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit) and layer.weight.quant_type == "nf4"

    summary = train(config)

    assert summary.steps == 3 and summary.peak_memory_kind == "cuda max_memory_allocated"
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.gpu
@pytest.mark.slow
@needs_gpu
def test_qlora_under_zero3_on_one_gpu_through_the_launcher(tmp_path):
    from trainers import launcher

    config = TrainConfig(
        base_model=str(write_tiny_llama(tmp_path / "tiny")),
        data=write_dataset_dir(tmp_path / "data"),
        method="qlora",
        launcher="torchrun",
        num_gpus=1,
        zero=3,
        max_steps=3,
        batch_size=2,
        output_dir=tmp_path / "run",
    )
    assert launcher.run(launcher.prepare(config), timeout=600) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["deepspeed_stage"] == 3 and summary["steps"] == 3


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("CULTURE_FORGE_LLAMA70B") or not _cuda(),
    reason="needs CULTURE_FORGE_LLAMA70B=/path/to/Llama-2-70b-chat-hf and 8 GPUs",
)
def test_llama70b_qlora_zero3_on_8_gpus(tmp_path):
    import torch

    from trainers import launcher

    if torch.cuda.device_count() < 8:
        pytest.skip("needs 8 GPUs")
    config = TrainConfig(
        base_model=os.environ["CULTURE_FORGE_LLAMA70B"],
        data=write_dataset_dir(tmp_path / "data"),
        method="qlora",
        launcher="deepspeed",
        num_gpus=8,
        zero=3,
        max_steps=2,
        batch_size=1,
        max_seq_length=512,
        output_dir=tmp_path / "run",
    )
    assert launcher.run(launcher.prepare(config), timeout=3600) == 0
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
