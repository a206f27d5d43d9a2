"""Every preflight refusal, and the memory estimate behind the will-it-fit check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train_helpers import write_tiny_llama
from trainers import preflight
from trainers.config import TrainConfig, UserError
from trainers.deepspeed_configs import CONFIG_DIR, gathers_16bit_on_save, load_ds_config

LLAMA70 = "meta-llama/Llama-2-70b-chat-hf"


def cfg(**values) -> TrainConfig:
    base = {"base_model": LLAMA70, "data": Path("data.jsonl"), "dry_run": True}
    return TrainConfig(**{**base, **values})


def refusals(config: TrainConfig, **kwargs) -> list[str]:
    kwargs.setdefault("cuda_available", False)
    kwargs.setdefault("bf16_supported", False)
    return preflight.run_preflight(config, **kwargs).refusals


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny"))


def test_shipped_configs_are_zero2_zero3_and_offload_with_whole_saves():
    shipped = {p.name: load_ds_config(p) for p in sorted(CONFIG_DIR.glob("ds_*.json"))}
    assert set(shipped) == {"ds_zero2.json", "ds_zero3.json", "ds_zero3_offload.json"}
    assert shipped["ds_zero2.json"]["zero_optimization"]["stage"] == 2
    for name in ("ds_zero3.json", "ds_zero3_offload.json"):
        assert shipped[name]["zero_optimization"]["stage"] == 3
        assert gathers_16bit_on_save(shipped[name])
    offload = shipped["ds_zero3_offload.json"]["zero_optimization"]
    assert offload["offload_param"]["device"] == offload["offload_optimizer"]["device"] == "cpu"


def test_a_sound_70b_qlora_zero3_plan_passes():
    config = cfg(method="qlora", launcher="deepspeed", zero=3, num_gpus=8, num_nodes=2)
    report = preflight.run_preflight(config, cuda_available=False, bf16_supported=False)
    assert report.refusals == []
    assert report.chosen.setup == "ZeRO-3"
    assert 5 < report.chosen.gpu_gb < 40
    assert "69.00B parameters" in report.render()


def test_refuses_4bit_under_zero3_without_compute_dtype_storage():
    (reason,) = refusals(
        cfg(method="qlora", launcher="deepspeed", zero=3, num_gpus=8, bnb_4bit_quant_storage="uint8")
    )
    assert "stored as uint8" in reason and "--bnb-4bit-quant-storage auto" in reason
    # auto resolves to the compute dtype under ZeRO-3, and uint8 is fine without ZeRO-3.
    assert preflight.quant_storage_name(cfg(method="qlora"), 3, "bf16") == "bfloat16"
    assert preflight.quant_storage_name(cfg(method="qlora"), 0, "bf16") == "uint8"
    assert (
        refusals(
            cfg(method="qlora", launcher="deepspeed", zero=2, num_gpus=8, bnb_4bit_quant_storage="uint8")
        )
        == []
    )


def test_refuses_prequantized_hub_models_under_zero3():
    reasons = refusals(
        cfg(
            base_model="TheBloke/Llama-2-70B-chat-GPTQ",
            method="lora",
            launcher="deepspeed",
            zero=3,
            num_gpus=8,
        )
    )
    assert len(reasons) == 1
    assert "pre-quantized (gptq)" in reasons[0] and "--zero 2" in reasons[0]


def test_refuses_a_local_awq_checkpoint_under_zero3(tiny_dir, tmp_path):
    awq = tmp_path / "awq"
    awq.mkdir()
    for f in tiny_dir.iterdir():
        (awq / f.name).write_bytes(f.read_bytes())
    config_json = json.loads((awq / "config.json").read_text())
    config_json["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128}
    (awq / "config.json").write_text(json.dumps(config_json))

    facts = preflight.model_facts(str(awq))
    reasons = refusals(cfg(base_model=str(awq), method="lora", launcher="deepspeed", zero=3, num_gpus=2))

    assert facts.quant_method == "awq"
    assert any("pre-quantized (awq)" in r for r in reasons)


def test_refuses_full_training_of_a_prequantized_model():
    reasons = refusals(cfg(base_model="TheBloke/Llama-2-7B-GPTQ", method="full"))
    assert any("pre-quantized (gptq); --method full cannot train it" in r for r in reasons)


def test_refuses_zero3_configs_that_would_save_empty_shards(tmp_path):
    ds = load_ds_config(CONFIG_DIR / "ds_zero3.json")
    ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = False
    custom = tmp_path / "my_zero3.json"
    custom.write_text(json.dumps(ds))

    (reason,) = refusals(cfg(method="qlora", launcher="deepspeed", deepspeed_config=custom, num_gpus=8))

    assert "stage3_gather_16bit_weights_on_model_save" in reason and "my_zero3.json" in reason


def test_refuses_a_model_that_cannot_fit_even_with_offload_and_prints_the_estimate():
    config = cfg(method="full", launcher="deepspeed", zero=3, num_gpus=8, cpu_memory_gb=512)
    report = preflight.run_preflight(config, cuda_available=False, bf16_supported=False)

    (reason,) = report.refusals
    assert "needs ~" in reason and "GiB per GPU" in reason
    assert "does not fit even with ZeRO-3 + CPU offload" in reason and "--method qlora" in reason
    rendered = report.render()
    for setup in ("no ZeRO", "ZeRO-2", "ZeRO-3", "ZeRO-3 + CPU offload"):
        assert setup in rendered
    assert "host RAM" in rendered


def test_suggests_offload_when_only_offload_fits():
    config = cfg(method="full", launcher="deepspeed", zero=3, num_gpus=8, cpu_memory_gb=2048)
    (reason,) = refusals(config)
    assert "ZeRO-3 + CPU offload would fit" in reason and "--zero 3 --offload" in reason
    assert refusals(config.model_copy(update={"offload": True})) == []


def test_suggests_zero3_when_zero2_does_not_fit():
    (reason,) = refusals(cfg(method="lora", launcher="deepspeed", zero=2, num_gpus=8))
    assert "ZeRO-3 would fit" in reason and "--zero 3" in reason


def test_refuses_a_tokenizer_without_chat_template(tmp_path):
    plain = write_tiny_llama(tmp_path / "base", chat_template=None)
    (reason,) = refusals(cfg(base_model=str(plain), dry_run=False))
    assert "has no chat template" in reason and "instruct variant" in reason


def test_check_raises_one_error_unless_skipped(tmp_path):
    bad = cfg(method="qlora", launcher="deepspeed", zero=3, num_gpus=8, bnb_4bit_quant_storage="uint8")
    with pytest.raises(preflight.PreflightError, match="^preflight refused: QLoRA under ZeRO-3"):
        preflight.check(bad, cuda_available=False, bf16_supported=False)
    skipped = bad.model_copy(update={"skip_preflight": True})
    assert preflight.check(skipped, cuda_available=False, bf16_supported=False).refusals


def test_the_gpu_estimate_is_not_enforced_on_a_machine_without_gpus(tiny_dir):
    report = preflight.run_preflight(
        cfg(base_model=str(tiny_dir), dry_run=False, gpu_memory_gb=0.001),
        cuda_available=False,
        bf16_supported=False,
    )
    assert report.refusals == []
    assert any("not enforced" in n for n in report.notes)


def test_model_sizes_come_from_config_then_name_table():
    assert preflight.model_facts("meta-llama/Llama-2-7b-chat-hf").params == pytest.approx(6.74e9)
    assert preflight.model_facts("mistralai/Mixtral-8x7B-Instruct-v0.1").params == pytest.approx(46.7e9)
    guessed = preflight.model_facts("someone/custom-20b-chat")
    assert guessed.params == pytest.approx(20e9) and guessed.layers > 0 and guessed.hidden > 0
    with pytest.raises(UserError, match="carries no size"):
        preflight.model_facts("someone/mystery-model")


def test_exact_parameter_count_for_a_local_directory(tiny_dir):
    from transformers import AutoModelForCausalLM

    facts = preflight.model_facts(str(tiny_dir))
    loaded = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    assert facts.params == sum(p.numel() for p in loaded.parameters())
    assert facts.source == "config.json" and facts.has_chat_template


def test_memory_model_scales_with_sharding():
    facts = preflight.ModelFacts("x", 7e9, 4096, 32, 32000, "test")
    config = cfg(method="full", num_gpus=8, launcher="deepspeed")
    plain = preflight.estimate_memory(facts, config, 0, False, "bf16")
    zero3 = preflight.estimate_memory(facts, config, 3, False, "bf16")
    offload = preflight.estimate_memory(facts, config, 3, True, "bf16")

    # 16 bytes per parameter for weights, gradients and AdamW state, without sharding.
    assert plain.parts["weights"] + plain.parts["grads+optimizer"] == pytest.approx(16 * 7e9 / 1024**3)
    assert zero3.parts["weights+grads+optimizer (sharded)"] == pytest.approx(16 * 7e9 / 8 / 1024**3)
    assert offload.gpu_gb < zero3.gpu_gb and offload.cpu_gb == pytest.approx(16 * 7e9 / 1024**3)
