"""`python cli.py serve`: the commands as jobs over HTTP, sharing one gate per provider and key.

    CULTURE_FORGE_TOKEN=... python cli.py serve --host 127.0.0.1 --port 8080 --runs-dir runs/ \\
        --limit openai:rpm=3000,tpm=400000,concurrency=64

Secure by default: it binds to 127.0.0.1, and refuses another interface unless a token is set in
CULTURE_FORGE_TOKEN (then every route wants `Authorization: Bearer <token>`). Provider keys come from
the server's environment, as for the commands; jobs never carry them.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from commands.errors import UserError

LIMIT_FIELDS = {"rpm": float, "tpm": float, "concurrency": int, "timeout": float}
PROVIDERS = ("openai", "google")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="Run augment, rejudge, culturepark, build-dataset and evaluate as jobs over HTTP.",
        description="A long-running server: jobs over HTTP on shared provider limits, resumed after a restart.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1: this machine only)."
    )
    p.add_argument("--port", type=int, default=8080, help="Port (default 8080).")
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="Where job run directories and the job table (jobs.sqlite) live (default runs/).",
    )
    p.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="PROVIDER:KEY=VALUE,...",
        help="Server-wide limits of one provider, shared by all jobs: rpm, tpm, concurrency, timeout "
        "(e.g. openai:rpm=3000,tpm=400000,concurrency=64). Repeat per provider (openai, google).",
    )
    p.add_argument(
        "--allow-base-url",
        action="append",
        default=[],
        metavar="URL",
        help="An OpenAI-compatible server jobs may name as base_url (repeatable). Jobs use the server's "
        "key, so by default they may name none: they reach OPENAI_BASE_URL or the OpenAI API.",
    )
    p.add_argument(
        "--max-jobs", type=int, default=4, help="Jobs running at once; later ones queue (default 4)."
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=1 << 20,
        help="Largest request body accepted (default 1 MiB); larger ones get 413.",
    )
    p.set_defaults(handler=run)


def parse_limits(values: list[str]) -> dict[str, object]:
    """`--limit openai:rpm=3000,concurrency=64` -> {"openai": CallLimits(...)}, one-line errors."""
    from agents.providers.resilience import CallLimits

    limits: dict[str, object] = {}
    for value in values:
        provider, sep, pairs = value.partition(":")
        if not sep or provider not in PROVIDERS:
            raise UserError(
                f"--limit {value}: expected PROVIDER:KEY=VALUE,... with PROVIDER one of {', '.join(PROVIDERS)}"
            )
        if provider in limits:
            raise UserError(f"--limit {value}: {provider} is limited twice")
        fields: dict[str, float | int] = {}
        for pair in filter(None, pairs.split(",")):
            key, eq, number = pair.partition("=")
            convert = LIMIT_FIELDS.get(key.strip())
            if not eq or convert is None:
                raise UserError(
                    f"--limit {value}: {pair!r} is not one of {', '.join(f'{k}=N' for k in LIMIT_FIELDS)}"
                )
            try:
                parsed = convert(number)
            except ValueError:
                raise UserError(f"--limit {value}: {key}={number!r} is not a number") from None
            if parsed <= 0:
                raise UserError(f"--limit {value}: {key} must be above 0")
            fields["timeout_s" if key == "timeout" else key.strip()] = parsed
        if not fields:
            raise UserError(f"--limit {value}: no limit given (rpm=, tpm=, concurrency=, timeout=)")
        limits[provider] = CallLimits(**fields)  # type: ignore[arg-type]
    return limits


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise UserError(
            'serve needs the server extra: pip install -e ".[serve]" (setup.sh installs it)'
        ) from None
    from agents.providers.resilience import GateRegistry
    from service.app import TOKEN_ENV, create_app, server_token
    from service.jobs import JobManager
    from storage.jobs import JobTableError

    limits = parse_limits(args.limit)
    token = server_token()
    if not is_loopback(args.host) and token is None:
        raise UserError(
            f"--host {args.host}: another interface than loopback needs a token; set {TOKEN_ENV} "
            "(clients then send Authorization: Bearer <token>)"
        )
    if args.max_jobs < 1:
        raise UserError(f"--max-jobs {args.max_jobs}: must be at least 1")
    if args.max_request_bytes < 1024:
        raise UserError(f"--max-request-bytes {args.max_request_bytes}: must be at least 1024")
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a port number")
    try:
        manager = JobManager(
            args.runs_dir,
            GateRegistry(limits),  # type: ignore[arg-type]
            max_jobs=args.max_jobs,
            allowed_base_urls=tuple(args.allow_base_url),
        )
    except JobTableError as exc:
        raise UserError(f"--runs-dir {args.runs_dir}: {exc}") from None
    app = create_app(manager, token=token, max_body_bytes=args.max_request_bytes)
    print(
        f"serving on http://{args.host}:{args.port} (runs in {manager.runs_dir}; "
        f"{'bearer token required' if token else 'no token: loopback only'}; API docs at /docs)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=30)
    return 0
