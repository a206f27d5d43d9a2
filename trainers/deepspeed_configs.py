"""The committed DeepSpeed configs in `configs/` and how a run picks one.

The files keep transformers' "auto" values (batch sizes, precision, bucket sizes) so that the
Trainer fills them from the training config at start-up: the JSON never disagrees with the flags.
Every ZeRO-3 file turns on `stage3_gather_16bit_weights_on_model_save`; without it a ZeRO-3 save
writes each rank's empty placeholder tensors instead of whole weights (the preflight refuses that).
The offload file names DeepSpeed's own AdamW because ZeRO-Offload runs the optimizer step on the
CPU, which only DeepSpeed's CPU Adam kernel does at a usable speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainers.config import TrainConfig, UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

SHIPPED = {
    (2, False): "ds_zero2.json",
    (3, False): "ds_zero3.json",
    (3, True): "ds_zero3_offload.json",
}


def shipped_config_path(zero: int, offload: bool) -> Path:
    try:
        return CONFIG_DIR / SHIPPED[(zero, offload)]
    except KeyError:
        raise UserError(f"no shipped DeepSpeed config for --zero {zero} with offload={offload}") from None


def source_config_path(config: TrainConfig) -> Path | None:
    """The DeepSpeed JSON this run starts from, or None when it does not use DeepSpeed."""
    if config.deepspeed_config is not None:
        return config.deepspeed_config
    if config.zero == 0:
        return None
    return shipped_config_path(config.zero, config.offload)


def load_ds_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"DeepSpeed config {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"DeepSpeed config {str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"DeepSpeed config {str(path)!r} must be a JSON object")
    return data


def zero_stage(ds: dict[str, Any]) -> int:
    return int(ds.get("zero_optimization", {}).get("stage", 0))


def offloads(ds: dict[str, Any]) -> bool:
    zero = ds.get("zero_optimization", {})
    return any(
        str(zero.get(key, {}).get("device", "none")).lower() not in ("none", "")
        for key in ("offload_param", "offload_optimizer")
    )


def gathers_16bit_on_save(ds: dict[str, Any]) -> bool:
    zero = ds.get("zero_optimization", {})
    # Older DeepSpeed spelled it stage3_gather_fp16_weights_on_model_save; both mean the same.
    value = zero.get(
        "stage3_gather_16bit_weights_on_model_save", zero.get("stage3_gather_fp16_weights_on_model_save")
    )
    return value is True or (isinstance(value, str) and value.lower() == "true")


def write_run_ds_config(config: TrainConfig, out_dir: Path) -> Path | None:
    """Copy the chosen DeepSpeed JSON into the run directory, so the run records exactly what it used."""
    source = source_config_path(config)
    if source is None:
        return None
    ds = load_ds_config(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "deepspeed_config.json"
    target.write_text(json.dumps(ds, indent=2) + "\n", encoding="utf-8")
    return target
