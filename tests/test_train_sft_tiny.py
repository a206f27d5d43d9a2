"""The trainer in-process on the tiny random Llama: resume, checkpoint safety, merge, summary files."""

from __future__ import annotations

import json

import pytest

from tests.train_helpers import write_dataset_dir, write_tiny_llama
from trainers.config import TrainConfig, UserError
from trainers.sft import train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return write_tiny_llama(root / "model"), write_dataset_dir(root / "data", n_train=8, n_val=2)


def config(tiny, out, **values) -> TrainConfig:
    model, data = tiny
    base = {
        "base_model": str(model),
        "data": data,
        "output_dir": out,
        "batch_size": 2,
        "save_steps": 2,
        "gradient_checkpointing": False,
        "learning_rate": 1e-3,
    }
    return TrainConfig(**{**base, **values})


def test_resume_continues_from_the_last_checkpoint_and_refuses_to_overwrite(tiny, tmp_path):
    out = tmp_path / "run"
    first = train(config(tiny, out, max_steps=3))
    assert first.steps == 3 and first.resumed_from is None
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-3").is_dir()

    with pytest.raises(UserError, match="already holds checkpoint-3; pass --resume"):
        train(config(tiny, out, max_steps=5))

    resumed = train(config(tiny, out, max_steps=5, resume=True))
    assert resumed.resumed_from == str(out / "checkpoint-3")
    assert resumed.steps == 5
    assert [p["step"] for p in resumed.loss_curve if "loss" in p] == [1, 2, 3, 4, 5]


def test_resume_without_a_checkpoint_is_a_user_error(tiny, tmp_path):
    with pytest.raises(UserError, match="no checkpoint-\\* directory"):
        train(config(tiny, tmp_path / "empty", max_steps=1, resume=True))


def test_merge_writes_a_standalone_model_and_the_summary_records_everything(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    summary = train(config(tiny, out, max_steps=2, merge=True, eval_steps=1))

    assert summary.merged_dir == str(out / "merged")
    merged = AutoModelForCausalLM.from_pretrained(summary.merged_dir)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["adapter_dir"] == str(out / "adapter") and on_disk["eval_loss"] is not None
    assert {"train_runtime_s", "tokens_per_second", "peak_memory_gb", "steps"} <= on_disk.keys()
    assert any("eval_loss" in p for p in on_disk["loss_curve"])
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qlora_without_cuda_is_refused_before_loading_anything(tiny, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="--method qlora needs a CUDA GPU"):
        train(config(tiny, tmp_path / "q", method="qlora", max_steps=1))
