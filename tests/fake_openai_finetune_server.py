"""A loopback HTTP server that imitates OpenAI's files and fine-tuning-jobs endpoints.

Enough of the API for the official client: upload a file (multipart), create / retrieve / list jobs,
list a job's events. Each retrieve moves a job one status further, emitting message and metrics
events on the way. Failures are scripted per route so that tests can check the retry policy.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PROGRESSION = ["validating_files", "queued", "running", "running", "running", "succeeded"]
TOTAL_STEPS = 3


@dataclass
class FakeState:
    api_key: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    progress: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    create_bodies: list[dict[str, Any]] = field(default_factory=list)
    # route ("POST /v1/files") -> statuses to answer with, one per request, before behaving normally
    failures: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    retry_after: str | None = "0"
    # Create the job but answer 500, as when a response is lost after the server acted.
    lose_create_response: bool = False
    fail_jobs: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if not k.startswith("_")}


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {}
        if status == 429 and self.server.state.retry_after is not None:
            headers["retry-after"] = self.server.state.retry_after
        self._send(
            status,
            {"error": {"message": message, "type": "test_error", "code": code, "param": None}},
            headers,
        )

    def _route(self) -> str:
        path = urlparse(self.path).path
        if path.startswith("/v1/fine_tuning/jobs/") and path.endswith("/events"):
            return f"{self.command} /v1/fine_tuning/jobs/ID/events"
        if path.startswith("/v1/fine_tuning/jobs/"):
            return f"{self.command} /v1/fine_tuning/jobs/ID"
        return f"{self.command} {path}"

    def _guard(self) -> bool:
        """Authentication and scripted failures; False when the request was already answered."""
        state = self.server.state
        route = self._route()
        with state.lock:
            state.requests.append((self.command, urlparse(self.path).path))
            scripted = state.failures[route].pop(0) if state.failures[route] else None
        if self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._error(401, "Incorrect API key provided.", "invalid_api_key")
            return False
        if scripted is not None:
            self._error(scripted, f"scripted failure {scripted}")
            return False
        return True

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self._body()
        if not self._guard():
            return
        path = urlparse(self.path).path
        if path == "/v1/files":
            self._upload(body)
        elif path == "/v1/fine_tuning/jobs":
            self._create_job(json.loads(body))
        else:
            self._error(404, f"no route {path}")

    def do_GET(self) -> None:  # noqa: N802
        if not self._guard():
            return
        parsed = urlparse(self.path)
        parts = parsed.path.strip("/").split("/")
        state = self.server.state
        if parsed.path == "/v1/fine_tuning/jobs":
            limit = int(parse_qs(parsed.query).get("limit", ["20"])[0])
            jobs = sorted(state.jobs.values(), key=lambda j: j["created_at"], reverse=True)[:limit]
            self._send(200, {"object": "list", "data": [_job_view(j) for j in jobs], "has_more": False})
            return
        if len(parts) >= 4 and parts[:3] == ["v1", "fine_tuning", "jobs"]:
            job = state.jobs.get(parts[3])
            if job is None:
                self._error(404, f"No such job: {parts[3]}")
            elif len(parts) == 5 and parts[4] == "events":
                events = list(reversed(state.events[job["id"]]))
                self._send(200, {"object": "list", "data": events, "has_more": False})
            else:
                self._advance(job)
                self._send(200, _job_view(job))
            return
        self._error(404, f"no route {parsed.path}")

    def _upload(self, body: bytes) -> None:
        header = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(header + body)
        fields: dict[str, Any] = {}
        filename, content = None, b""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                filename, content = part.get_filename(), part.get_payload(decode=True)
            else:
                fields[name] = part.get_content().strip()
        state = self.server.state
        if fields.get("purpose") != "fine-tune" or filename is None:
            self._error(400, f"bad upload: purpose={fields.get('purpose')!r} filename={filename!r}")
            return
        file_id = f"file-{next(state.ids)}"
        state.uploads[file_id] = content
        state.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": "fine-tune",
            "status": "processed",
        }
        self._send(200, state.files[file_id])

    def _create_job(self, body: dict[str, Any]) -> None:
        state = self.server.state
        state.create_bodies.append(body)
        for key in ("training_file", "validation_file"):
            if body.get(key) and body[key] not in state.files:
                self._error(400, f"invalid {key}: {body[key]}")
                return
        job_id = f"ftjob-{next(state.ids)}"
        hyper = body.get("method", {}).get("supervised", {}).get("hyperparameters", {})
        job = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "finished_at": None,
            "model": body["model"],
            "fine_tuned_model": None,
            "organization_id": "org-test",
            "result_files": [],
            "status": "validating_files",
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "trained_tokens": None,
            "error": None,
            "seed": body.get("seed", 0),
            "suffix": body.get("suffix"),
            "hyperparameters": {
                "n_epochs": hyper.get("n_epochs", "auto"),
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
            },
            "method": body.get("method"),
        }
        state.jobs[job_id] = job
        state.progress[job_id] = 0
        self._event(job, "message", f"Created fine-tuning job: {job_id}")
        if state.lose_create_response:
            state.lose_create_response = False
            self._error(500, "the server created the job but the answer was lost")
            return
        self._send(200, _job_view(job))

    def _event(self, job: dict[str, Any], kind: str, message: str, data: dict | None = None) -> None:
        state = self.server.state
        state.events[job["id"]].append(
            {
                "id": f"ftevent-{next(state.ids)}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": "info",
                "message": message,
                "type": kind,
                "data": data,
            }
        )

    def _advance(self, job: dict[str, Any]) -> None:
        state = self.server.state
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return
        state.progress[job["id"]] += 1
        step = state.progress[job["id"]]
        status = PROGRESSION[min(step, len(PROGRESSION) - 1)]
        if status == "running":
            metric_step = PROGRESSION[: step + 1].count("running")
            self._event(
                job,
                "metrics",
                f"Step {metric_step}/{TOTAL_STEPS}: training loss={1.5 / metric_step:.3f}",
                {"step": metric_step, "total_steps": TOTAL_STEPS, "train_loss": 1.5 / metric_step},
            )
        if status == "succeeded" and state.fail_jobs:
            job["status"] = "failed"
            job["error"] = {
                "code": "invalid_training_file",
                "message": "Training file has too few examples.",
                "param": "training_file",
            }
            job["finished_at"] = int(time.time())
            self._event(job, "message", "Fine-tuning job failed")
            return
        if status != job["status"]:
            job["status"] = status
            self._event(job, "message", f"Job status: {status}")
        if status == "succeeded":
            suffix = job.get("suffix") or "run"
            job["fine_tuned_model"] = f"ft:{job['model']}:org-test:{suffix}:{job['id'][-4:]}"
            job["trained_tokens"] = 1234
            job["finished_at"] = int(time.time())


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api_key: str) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = FakeState(api_key=api_key)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
