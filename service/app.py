"""The HTTP face of the server: FastAPI routes over the job manager.

    POST /v1/jobs                      {"command": "augment", "args": {...}}  -> 201, the job
    GET  /v1/jobs                      every job
    GET  /v1/jobs/{id}                 status, progress, manifest
    GET  /v1/jobs/{id}/events          live progress (server-sent events)
    GET  /v1/jobs/{id}/files           the run directory's files
    GET  /v1/jobs/{id}/files/{path}    one of them
    POST /v1/jobs/{id}/cancel          stop it, resumable
    POST /v1/jobs/{id}/resume          go on where it stopped
    GET  /health                       liveness, job counts, the shared gates
    GET  /docs, /openapi.json          the API's documentation

Two ASGI layers wrap every route, the documentation included: the bearer-token check (when the
server has a token) and the request-size cap. Both are plain ASGI so they also hold for the event
stream, which a request/response middleware would buffer.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.jobs import InvalidJob, JobConflict, JobManager, JobNotFound, job_view

KEEPALIVE_S = 15.0


class JobRequest(BaseModel):
    command: str = Field(description="augment, rejudge, culturepark, build-dataset or evaluate")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="The command's settings, named as its flags are without the dashes "
        '(--max-rounds 2 is {"max_rounds": 2}). `out` is chosen by the server. Keys are never '
        "arguments: they come from the server's environment.",
    )


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BearerToken:
    """Every HTTP request must carry `Authorization: Bearer <token>`; otherwise 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            # Compared in constant time: how long a wrong token takes says nothing about the right one.
            if not hmac.compare_digest(given, self.expected):
                detail = "missing bearer token" if not given else "wrong bearer token"
                await _send_json(send, 401, {"detail": detail}, [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Requests larger than `limit` bytes are refused with 413, by their Content-Length or, for a
    body sent in chunks, as soon as the chunks exceed it (nothing larger is ever held in memory)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = {"detail": f"request body over {self.limit} bytes"}
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _send_json(send, 413, too_large, [])
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, too_large, [])


def _file_in_run(run_dir: Path, relative: str) -> Path:
    """The file `relative` names inside the run directory, refused when it would leave it."""
    parts = Path(relative).parts
    if not relative or Path(relative).is_absolute() or ".." in parts:
        raise HTTPException(400, f"file path {relative!r} must stay inside the job's run directory")
    root = run_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):  # a symbolic link pointing out of the run
        raise HTTPException(400, f"file path {relative!r} leads outside the job's run directory")
    if not path.is_file():
        raise HTTPException(404, f"no file {relative!r} in the job's run directory")
    return path


def create_app(manager: JobManager, *, token: str | None, max_body_bytes: int = 1 << 20) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resumed = await manager.start()
        if resumed:
            print(f"resumed {len(resumed)} unfinished job(s): {', '.join(resumed)}", flush=True)
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(
        title="culture-forge",
        summary="Culture-aware data generation and evaluation jobs on shared provider limits.",
        lifespan=lifespan,
    )

    def found(job_id: str) -> Any:
        try:
            return manager.get(job_id)
        except JobNotFound:
            raise HTTPException(404, f"no job {job_id}") from None

    def view(job_id: str) -> dict[str, Any]:
        record = found(job_id)
        return job_view(record, manager.events(job_id))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        statuses = Counter(record.status for record in manager.table.all())
        gates = {name: gate.report(1.0)["requests"] for name, gate in manager.gates.gates().items()}
        return {"status": "ok", "jobs": dict(statuses), "gate_requests": gates}

    @app.post(
        "/v1/jobs",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": JobRequest.model_json_schema()}},
            }
        },
    )
    async def submit(request: Request) -> dict[str, Any]:
        # The body is read as JSON whatever its content type says: `curl -d '{...}'` sends it as a
        # form, and a 415 for the most common way to call the API helps nobody.
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPException(
                422, [{"loc": ["body"], "msg": f"not JSON: {exc}", "type": "json_invalid"}]
            ) from None
        try:
            job = JobRequest.model_validate(body)
        except ValidationError as exc:
            problem = exc.errors()[0]
            detail = {"loc": ["body", *problem["loc"]], "msg": problem["msg"], "type": problem["type"]}
            raise HTTPException(422, [detail]) from None
        try:
            record = manager.submit(job.command, job.args)
        except InvalidJob as exc:
            raise HTTPException(
                422, [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "value_error"}]
            ) from None
        return view(record.id)

    @app.get("/v1/jobs")
    async def jobs() -> list[dict[str, Any]]:
        return [view(record.id) for record in manager.table.all()]

    @app.get("/v1/jobs/{job_id}")
    async def job(job_id: str) -> dict[str, Any]:
        return view(job_id)

    @app.post("/v1/jobs/{job_id}/cancel")
    async def cancel(job_id: str) -> dict[str, Any]:
        found(job_id)
        try:
            await manager.cancel(job_id)
        except JobConflict as exc:
            raise HTTPException(409, str(exc)) from None
        return view(job_id)

    @app.post("/v1/jobs/{job_id}/resume", status_code=202)
    async def resume(job_id: str) -> dict[str, Any]:
        found(job_id)
        try:
            manager.resume(job_id)
        except JobConflict as exc:
            raise HTTPException(409, str(exc)) from None
        return view(job_id)

    @app.get("/v1/jobs/{job_id}/files")
    def files(job_id: str) -> list[str]:
        root = found(job_id).out.resolve()
        if not root.is_dir():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    @app.get("/v1/jobs/{job_id}/files/{relative:path}")
    def file(job_id: str, relative: str) -> FileResponse:
        return FileResponse(_file_in_run(found(job_id).out, relative))

    @app.get("/v1/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        found(job_id)
        stream = manager.events(job_id)
        last = request.headers.get("last-event-id", "")
        seen_before = int(last) if last.isdigit() else -1

        async def lines() -> AsyncIterator[str]:
            seen = seen_before
            while True:
                for number, event, data in stream.after(seen):
                    yield f"id: {number}\nevent: {event}\ndata: {json.dumps(data)}\n\n"
                    seen = number
                    if event == "end":
                        return
                try:
                    await asyncio.wait_for(stream.wait_beyond(seen), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"  # a comment line keeps proxies from closing the stream

        return StreamingResponse(
            lines(), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    @app.exception_handler(JobNotFound)
    async def not_found(request: Request, exc: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": f"no job {exc.args[0]}"}, status_code=404)

    wrapped: ASGIApp = BodyLimit(app, max_body_bytes)
    if token:
        wrapped = BearerToken(wrapped, token)
    return wrapped


TOKEN_ENV = "CULTURE_FORGE_TOKEN"


def server_token() -> str | None:
    return os.environ.get(TOKEN_ENV, "").strip() or None
