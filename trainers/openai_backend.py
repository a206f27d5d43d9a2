"""Fine-tune through OpenAI: upload the chat JSONL, create the job, follow it, record the result.

Every API call goes through the generation layer's transport policy (agents.providers.resilience): 429, 5xx,
timeouts and connection resets are retried with jittered exponential backoff raised to the server's
Retry-After; 400/401/403/404 fail at once. The openai client's own retries are off so that there is
one policy, not two stacked. The job record (openai_job.json) is written as soon as the job exists,
so an interrupted follow can be picked up again with --job.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from agents.providers.resilience import CallLimits, RetryPolicy, describe_error, is_transient_error
from trainers.chat_data import data_layout, read_chat_jsonl
from trainers.config import TrainConfig, UserError

TERMINAL = ("succeeded", "failed", "cancelled")
RECORD_NAME = "openai_job.json"
# OpenAI rejects training files with fewer examples than this.
MIN_EXAMPLES = 10


class OpenAIJobError(UserError):
    """The API refused a request, or kept failing past the retry budget."""


def _scrub(text: str) -> str:
    key = os.environ.get("OPENAI_API_KEY")
    return text.replace(key, "***") if key else text


def make_client(config: TrainConfig):
    from openai import OpenAI

    if not os.environ.get("OPENAI_API_KEY"):
        raise UserError("OPENAI_API_KEY is not set; export it to use --backend openai")
    return OpenAI(base_url=config.openai_base_url or None, max_retries=0, timeout=120.0)


@dataclass
class Calls:
    """Runs one API call under the shared transport retry policy and says what it is retrying."""

    max_retries: int
    out: TextIO
    sleep: Callable[[float], None] = time.sleep
    backoff_initial_s: float = 1.0
    retries: int = 0

    def __call__(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        limits = CallLimits(max_attempts=self.max_retries + 1, backoff_initial_s=self.backoff_initial_s)

        def before_sleep(state) -> None:
            self.retries += 1
            exc = state.outcome.exception()
            print(f"openai: {what}: {_scrub(describe_error(exc))}; retrying", file=self.out, flush=True)

        retrying = Retrying(
            stop=stop_after_attempt(limits.max_attempts),
            wait=RetryPolicy(limits).wait_seconds,
            retry=retry_if_exception(is_transient_error),
            before_sleep=before_sleep,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return fn(*args, **kwargs)
        except Exception as exc:
            import openai

            if isinstance(exc, openai.OpenAIError):
                gave_up = " (gave up after retries)" if is_transient_error(exc) else ""
                raise OpenAIJobError(f"OpenAI {what} failed{gave_up}: {_scrub(describe_error(exc))}") from exc
            raise
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover


def openai_files(config: TrainConfig) -> tuple[Path, Path | None]:
    """The JSONL files to upload; a build-dataset directory contributes train.jsonl / validation.jsonl."""
    assert config.data is not None
    data = config.data
    layout = data_layout(data)
    if layout == "saved-dataset":
        raise UserError(f"data directory {str(data)!r} has no train.jsonl to upload (OpenAI takes JSONL)")
    if layout == "jsonl-dir":
        validation = data / "validation.jsonl"
        return data / "train.jsonl", config.validation_data or (validation if validation.is_file() else None)
    return data, config.validation_data


@dataclass
class JobRecord:
    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def update(self, job, **extra: Any) -> None:
        dumped = job.model_dump(mode="json") if hasattr(job, "model_dump") else dict(job)
        keep = (
            "id",
            "status",
            "model",
            "fine_tuned_model",
            "training_file",
            "validation_file",
            "trained_tokens",
            "created_at",
            "finished_at",
            "estimated_finish",
            "error",
            "result_files",
            "hyperparameters",
            "method",
            "seed",
            "suffix",
        )
        self.data.update({k: dumped.get(k) for k in keep if k in dumped})
        self.data.update(extra)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")


class ProgressDisplay:
    """Status changes and training metrics as they arrive; a live bar on a terminal, lines otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._status: str | None = None
        self._bar = None
        self._task = None
        if out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=out),
                transient=False,
            )

    def status(self, job) -> None:
        if job.status != self._status:
            self._status = job.status
            self._line(f"openai: job {job.id}: {job.status}")

    def event(self, event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "metrics" and "step" in data:
            step, total = int(data["step"]), int(data.get("total_steps") or 0)
            loss = data.get("train_loss")
            if self._bar is not None and total:
                if self._task is None:
                    self._bar.start()
                    self._task = self._bar.add_task("training", total=total)
                desc = f"training loss {loss:.4f}" if isinstance(loss, (int, float)) else "training"
                self._bar.update(self._task, completed=step, description=desc)
                return
            parts = [f"step {step}" + (f"/{total}" if total else "")]
            for key in ("train_loss", "valid_loss", "train_mean_token_accuracy"):
                if isinstance(data.get(key), (int, float)):
                    parts.append(f"{key} {data[key]:.4f}")
            self._line("openai: " + " ".join(parts))
        else:
            self._line(f"openai: [{event.level}] {event.message}")

    def close(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stop()
            self._task = None

    def _line(self, text: str) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.out, flush=True)


def _find_existing_job(client, calls: Calls, training_file: str, since: float):
    """After a lost answer to 'create job', find the job the server may have created anyway."""
    page = calls("list jobs", client.fine_tuning.jobs.list, limit=20)
    for job in page.data:
        if job.training_file == training_file and job.created_at >= since - 60:
            return job
    return None


def checked_files(config: TrainConfig, out: TextIO) -> tuple[Path, Path | None]:
    """The files to upload, every conversation checked first: a bad file costs no upload (nor a dry run's 0)."""
    train_path, val_path = openai_files(config)
    n_train = len(read_chat_jsonl(train_path))
    if val_path is not None:
        read_chat_jsonl(val_path)
    if n_train < MIN_EXAMPLES:
        print(
            f"openai: warning: {train_path} has {n_train} examples; OpenAI asks for at least {MIN_EXAMPLES}",
            file=out,
        )
    return train_path, val_path


def create_job(client, config: TrainConfig, calls: Calls, out: TextIO):
    train_path, val_path = checked_files(config, out)

    def upload(path: Path) -> str:
        payload = (path.name, path.read_bytes())
        file = calls(f"upload {path.name}", client.files.create, file=payload, purpose="fine-tune")
        print(f"openai: uploaded {path} as {file.id}", file=out, flush=True)
        return file.id

    training_file = upload(train_path)
    validation_file = upload(val_path) if val_path is not None else None

    hyper: dict[str, Any] = {}
    if config.num_epochs is not None:
        hyper["n_epochs"] = max(1, round(config.num_epochs))
    if config.openai_batch_size is not None:
        hyper["batch_size"] = config.openai_batch_size
    if config.openai_learning_rate_multiplier is not None:
        hyper["learning_rate_multiplier"] = config.openai_learning_rate_multiplier
    kwargs: dict[str, Any] = {
        "model": config.base_model,
        "training_file": training_file,
        "seed": config.seed,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
    }
    if validation_file:
        kwargs["validation_file"] = validation_file
    if config.suffix:
        kwargs["suffix"] = config.suffix

    started = time.time()
    attempts = 0

    def create():
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            existing = _find_existing_job(client, calls, training_file, started)
            if existing is not None:
                return existing
        return client.fine_tuning.jobs.create(**kwargs)

    return calls("create job", create)


def follow(
    client,
    job,
    config: TrainConfig,
    calls: Calls,
    record: JobRecord,
    display: ProgressDisplay,
    sleep: Callable[[float], None],
):
    seen: set[str] = set()
    last_metrics: dict[str, Any] = {}
    while True:
        events = calls("list events", client.fine_tuning.jobs.list_events, job.id, limit=50)
        # The API lists newest first.
        for event in reversed(list(events.data)):
            if event.id in seen:
                continue
            seen.add(event.id)
            if event.type == "metrics" and isinstance(event.data, dict):
                last_metrics = dict(event.data)
            display.event(event)
        display.status(job)
        record.update(job, last_metrics=last_metrics or None)
        if job.status in TERMINAL:
            return job
        sleep(config.poll_interval)
        job = calls("retrieve job", client.fine_tuning.jobs.retrieve, job.id)


def run_openai(
    config: TrainConfig,
    *,
    client=None,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    backoff_initial_s: float = 1.0,
) -> int:
    """Create (or resume) and follow one job; 0 when it succeeded, 1 when it failed or was cancelled."""
    out = out or sys.stderr
    client = client or make_client(config)
    calls = Calls(config.max_retries, out, sleep=sleep, backoff_initial_s=backoff_initial_s)
    record = JobRecord(config.output_dir / RECORD_NAME)
    if config.job:
        job = calls("retrieve job", client.fine_tuning.jobs.retrieve, config.job)
        print(f"openai: following job {job.id} ({job.model})", file=out, flush=True)
    else:
        job = create_job(client, config, calls, out)
        print(
            f"openai: created job {job.id}; if interrupted, follow it again with --job {job.id}",
            file=out,
            flush=True,
        )
    record.update(job)

    display = ProgressDisplay(out)
    try:
        job = follow(client, job, config, calls, record, display, sleep)
    except KeyboardInterrupt:
        print(f"openai: stopped following; the job goes on at OpenAI. Resume with --job {job.id}", file=out)
        return 130
    finally:
        display.close()
    record.update(job, retries=calls.retries)
    if job.status == "succeeded":
        print(f"openai: fine-tuned model {job.fine_tuned_model} (record: {record.path})", file=out)
        print(job.fine_tuned_model)
        return 0
    reason = getattr(job.error, "message", None) if job.error else None
    print(f"openai: job {job.id} {job.status}" + (f": {reason}" if reason else ""), file=out)
    return 1
