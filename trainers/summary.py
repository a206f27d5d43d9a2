"""The record a finished run leaves behind: summary.json, loss_curve.json and loss_curve.png."""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainSummary:
    base_model: str
    method: str
    steps: int
    epochs: float
    train_runtime_s: float
    tokens_seen: int
    tokens_per_second: float
    first_loss: float | None
    final_loss: float | None
    eval_loss: float | None
    peak_memory_gb: float
    peak_memory_kind: str
    train_examples: int
    validation_examples: int
    dropped_examples: int
    truncated_examples: int
    prompt_mismatches: int
    world_size: int
    deepspeed_stage: int
    adapter_dir: str | None = None
    model_dir: str | None = None
    merged_dir: str | None = None
    resumed_from: str | None = None
    loss_curve: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def loss_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Training-loss points (and eval losses) out of the Trainer's log history."""
    points = []
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            point = {"step": int(entry["step"]), "loss": float(entry["loss"])}
            if "learning_rate" in entry:
                point["learning_rate"] = float(entry["learning_rate"])
            points.append(point)
        elif "eval_loss" in entry and "step" in entry:
            points.append({"step": int(entry["step"]), "eval_loss": float(entry["eval_loss"])})
    return points


def peak_memory() -> tuple[float, str]:
    """Peak GPU memory of this process if it used CUDA, else its peak resident host memory (GiB)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 1024**3, "cuda max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024**3 if sys.platform == "darwin" else 1024**2), "host peak RSS"


def plot_loss(points: list[dict[str, float]], path: Path, title: str) -> Path | None:
    train = [(p["step"], p["loss"]) for p in points if "loss" in p]
    evals = [(p["step"], p["eval_loss"]) for p in points if "eval_loss" in p]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: training boxes have no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", marker="." if len(train) < 50 else None)
    if evals:
        ax.plot(*zip(*evals, strict=True), label="eval loss", marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_summary(summary: TrainSummary, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "loss_curve.json").write_text(
        json.dumps(summary.loss_curve, indent=2) + "\n", encoding="utf-8"
    )
    plot_loss(summary.loss_curve, out_dir / "loss_curve.png", f"{summary.base_model} ({summary.method})")
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    return path
