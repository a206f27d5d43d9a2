"""Throughput of `augment` against the mock OpenAI server: how close to ideal is the orchestration?

    .venv/bin/python -m bench.augment_bench --seeds 50 --concurrency 32 --latency 0.2 --rpm 12000 --repeat 5

The mock server runs in its own process (as a provider would), so the client is measured alone.
Prints wall time, the ideal time (requests x latency / concurrency), their ratio, generator calls per
seed, and the highest request rate the server saw in any 10-second (and 1-second) window against --rpm.
Each share of unusable structured answers in --unusable (default: 0 and 0.05) gets its own runs and
its own median ratio.

Every request counts towards the ideal, embedding requests of the judge too: they take the same 200 ms
and hold the same concurrency slots. So does every unusable answer: the server spent its latency on
it and the client must ask again, so each adds one request to the ideal (its re-ask is the request
that would have been made anyway; the server draws unusable answers per request, not per arrival,
so the count is the same from run to run). The ideal without them is printed beside it.

The ideal ignores --rpm, so the default --rpm (12000) sits above what 32 slots of 200 ms can reach
(9600/min); a lower --rpm (say 3000) shows the limiter at work, and the rate-bound ideal
(requests / rpm) is printed beside it. By default the judge embeds on the mock server too (hashed bag
of words), so the ratio measures orchestration; `--judge embed:local` adds the CPU time of the real
embedding model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.mock_openai_server import UNUSABLE, share

BENCH_KEY = "sk-bench-not-a-real-key"


def busiest_window(times: list[float], window: float = 10.0) -> int:
    """The most requests that arrived within any `window` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def start_mock(latency: float, log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """The mock server in a process of its own (as a provider would be), with `flags` added; returns
    the process and its base URL."""
    command = [
        sys.executable,
        "-m",
        "bench.mock_openai_server",
        "--port",
        "0",
        "--latency",
        str(latency),
        "--api-key",
        BENCH_KEY,
        "--log",
        str(log),
        *flags,
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if " on " not in line:
        server.kill()
        raise SystemExit(f"mock server did not start: {line!r}")
    return server, line.rsplit(" on ", 1)[1].strip()


@dataclass
class BenchRun:
    code: int
    wall: float  # the whole `cli.py augment` process, start-up included
    run: float  # the manifest's duration: the run itself
    requests: list[dict]  # the mock server's log of answered requests
    manifest: dict


def augment_once(args: argparse.Namespace, unusable: float) -> BenchRun:
    """One `cli.py augment` process against a fresh mock server, in a fresh run directory: nothing
    (imports, caches, connections) carries over from one run to the next."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.jsonl"
        server, base_url = start_mock(args.latency, log, "--unusable", str(unusable))
        try:
            out = Path(tmp) / "run"
            command = [
                sys.executable,
                str(Path(__file__).resolve().parent.parent / "cli.py"),
                "augment",
                "--quiet",
                "--generator",
                "openai:mock-model",
                "--judge",
                args.judge,
                "--threshold",
                str(args.threshold),
                "--base-url",
                base_url,
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
            code = subprocess.run(command, env={**os.environ, "OPENAI_API_KEY": BENCH_KEY}).returncode
            wall = time.perf_counter() - started
            manifest = json.loads((out / "manifest.json").read_text())
        finally:
            server.terminate()
            server.wait()
        if args.keep_log:
            args.keep_log.write_text(log.read_text())
        requests = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    served = [r for r in requests if r["path"].endswith(("/chat/completions", "/embeddings"))]
    return BenchRun(code, wall, manifest["duration_s"], served, manifest)


def report(args: argparse.Namespace, unusable: float, result: BenchRun) -> float:
    """Print one run's numbers; returns its ratio."""
    served = result.requests
    chats = [r for r in served if r["path"].endswith("/chat/completions")]
    unusable_answers = sum(r.get("fault") == UNUSABLE for r in served)
    ideal = len(served) * args.latency / args.concurrency
    ideal_usable = (len(served) - unusable_answers) * args.latency / args.concurrency
    rate_bound = max(ideal, len(served) * 60.0 / args.rpm)
    window10 = busiest_window([r["at"] for r in served], 10.0)
    window1 = busiest_window([r["at"] for r in served], 1.0)
    ratio = result.run / ideal
    print(f"exit code                 {result.code}")
    print(
        f"seeds                     {args.seeds}  (n={args.n}, concurrency={args.concurrency}, "
        f"latency={args.latency}s, judge={args.judge})"
    )
    print(
        f"requests                  {len(served)}  ({len(chats)} chat = {len(chats) / args.seeds:.2f} "
        f"generator calls per seed, {len(served) - len(chats)} embedding)"
    )
    print(
        f"unusable answers          {unusable_answers}  (share {unusable:g} of structured answers; "
        "each one a request, counted in the ideal)"
    )
    print(f"wall time                 {result.wall:.2f} s  (run {result.run:.2f} s, the rest is start-up)")
    print(f"ideal time                {ideal:.2f} s  (requests x latency / concurrency)")
    if unusable_answers:
        print(
            f"ideal without unusable    {ideal_usable:.2f} s  (only usable answers counted) "
            f"-> ratio {result.run / ideal_usable:.2f}"
        )
    print(f"ratio                     {ratio:.2f}  (run / ideal; {result.wall / ideal:.2f} with start-up)")
    if rate_bound > ideal:
        print(
            f"rate-bound ideal          {rate_bound:.2f} s  (requests / rpm) -> ratio {result.run / rate_bound:.2f}"
        )
    print(f"busiest 10 s window       {window10} requests = {window10 * 6} per minute (limit {args.rpm:g})")
    print(f"busiest 1 s window        {window1} requests = {window1 * 60} per minute (limit {args.rpm:g})")
    print(f"rate report               {result.manifest['rate']}")
    print(f"ledger                    {result.manifest['ledger']}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rpm", type=float, default=12000.0)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument(
        "--judge",
        default="embed:openai:mock-embed",
        help="judge spec; the default embeds on the mock server so the number measures orchestration, "
        "embed:local adds the CPU time of the real embedding model",
    )
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs, each a fresh process with a fresh mock server and run directory; the median ratio "
        "is printed last, since a shared 2-core machine varies by a few percent from run to run",
    )
    parser.add_argument(
        "--unusable",
        type=share,
        nargs="+",
        default=[0.0, 0.05],
        help="shares of structured answers the mock server makes unusable (an empty synonym table, a "
        "verdict-less refusal); each share gets --repeat runs",
    )
    parser.add_argument("--keep-log", type=Path, help="copy the (last run's) mock server request log here")
    args = parser.parse_args()

    medians: dict[float, tuple[float, list[float]]] = {}
    for unusable in args.unusable:
        ratios = []
        for index in range(args.repeat):
            print(f"--- {unusable:.0%} unusable answers, run {index + 1} of {args.repeat}")
            ratios.append(report(args, unusable, augment_once(args, unusable)))
        medians[unusable] = (statistics.median(ratios), ratios)
    for unusable, (median, ratios) in medians.items():
        print(
            f"median ratio at {unusable:4.0%} unusable {median:.2f}  "
            f"(runs: {' '.join(f'{r:.2f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
