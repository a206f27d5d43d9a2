"""Throughput of `augment` against the mock OpenAI server: how close to ideal is the orchestration?

    .venv/bin/python -m bench.augment_bench --seeds 50 --concurrency 32 --latency 0.2 --rpm 3000

Prints wall time, the ideal time (generator calls x latency / concurrency), their ratio, calls per
seed, and the highest request rate the server saw in any 10-second window against --rpm. By default the
judge embeds on the mock server too (hashed bag of words), so the ratio measures the orchestration;
`--judge embed:local` adds the CPU time of the real embedding model.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.mock_openai_server import MockOpenAIServer, ServerConfig

BENCH_KEY = "sk-bench-not-a-real-key"


def busiest_window(times: list[float], window: float = 10.0) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rpm", type=float, default=3000.0)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument(
        "--judge",
        default="embed:openai:mock-embed",
        help="judge spec; the default embeds on the mock server so the number measures orchestration, "
        "embed:local adds the CPU time of the real embedding model",
    )
    parser.add_argument("--threshold", type=float, default=0.8)
    args = parser.parse_args()

    from cli import main as cli_main

    os.environ["OPENAI_API_KEY"] = BENCH_KEY
    with (
        tempfile.TemporaryDirectory() as tmp,
        MockOpenAIServer(ServerConfig(api_key=BENCH_KEY, latency_s=args.latency)) as server,
    ):
        out = Path(tmp) / "run"
        flags = [
            "augment",
            "--quiet",
            "--generator",
            "openai:mock-model",
            "--base-url",
            server.base_url,
            "--limit",
            str(args.seeds),
            "--n",
            str(args.n),
            "--concurrency",
            str(args.concurrency),
            "--rpm",
            str(args.rpm),
            "--out",
            str(out),
        ]
        started = time.perf_counter()
        code = cli_main(flags)
        wall = time.perf_counter() - started
        manifest = json.loads((out / "manifest.json").read_text())
        chats = server.requests("/chat/completions", status=None)
    calls = len(chats)
    ideal = calls * args.latency / args.concurrency
    window = busiest_window([r.at for r in chats])
    print(f"exit code                 {code}")
    print(
        f"seeds                     {args.seeds}  (n={args.n}, concurrency={args.concurrency}, latency={args.latency}s)"
    )
    print(f"generator calls           {calls}  ({calls / args.seeds:.2f} per seed)")
    print(f"wall time                 {wall:.2f} s  (run {manifest['duration_s']:.2f} s)")
    print(f"ideal time                {ideal:.2f} s  (calls x latency / concurrency)")
    run = manifest["duration_s"]
    print(f"ratio                     {run / ideal:.2f} (run / ideal; {wall / ideal:.2f} with start-up)" if ideal else "ratio n/a")
    print(f"busiest 10 s window       {window} requests = {window * 6} per minute (limit {args.rpm:g})")
    print(f"rate report               {manifest['rate']}")


if __name__ == "__main__":
    main()
