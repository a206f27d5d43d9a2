"""Throughput of `culturepark` against the mock OpenAI server: 50 seeds x 2 cultures by default.

    .venv/bin/python -m bench.culturepark_bench --seeds 50 --cultures Arabic German --concurrency 32 --latency 0.2 --repeat 3

The mock server runs in its own process (as a provider would). Every request counts: dialogue lines,
extractions, verifications, rewrites and the embedding requests of de-duplication all take the same
latency and the same slots. Two lower bounds on the run's span are printed:
- the work bound: requests x latency / concurrency (all slots busy all the time);
- the chain bound: the longest chain of requests that must follow one another, 2 x turns dialogue lines,
  then one round each of extraction, verification, rewriting, re-verification and embedding, plus the
  run's final near-duplicate embedding, each a latency long.
The ratio is the run's span over the larger of the two; the target is 1.25.
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
from pathlib import Path

from bench.augment_bench import BENCH_KEY, busiest_window, start_mock

# Requests that follow the dialogue in one (culture, seed) thread: extraction, verification, rewrite,
# re-verification, the per-dialogue embedding, and the run's final embedding for near-duplicates.
ROUNDS_AFTER_DIALOGUE = 6


def culturepark_once(args: argparse.Namespace, culture: str) -> tuple[int, float, float, list[dict], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.jsonl"
        server, base_url = start_mock(args.latency, log, "--fault-rate", str(args.fault_rate))
        out = Path(tmp) / "run"
        try:
            command = [
                sys.executable, str(Path(__file__).resolve().parent.parent / "cli.py"), "culturepark",
                "--quiet", "--culture", culture, "--generator", "openai:mock-model",
                "--verifier", "llm:openai:mock-judge", "--embedder", "embed:openai:mock-embed",
                "--base-url", base_url, "--limit", str(args.seeds), "--turns", str(args.turns),
                "--mode", args.mode, "--style", args.style, "--concurrency", str(args.concurrency),
                "--rpm", str(args.rpm), "--out", str(out),
            ]  # fmt: skip
            started = time.perf_counter()
            code = subprocess.run(command, env={**os.environ, "OPENAI_API_KEY": BENCH_KEY}).returncode
            wall = time.perf_counter() - started
            manifest = json.loads((out / "manifest.json").read_text())
        finally:
            server.terminate()
            server.wait()
        requests = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    served = [r for r in requests if r["path"].endswith(("/chat/completions", "/embeddings"))]
    return code, wall, manifest["duration_s"], served, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--cultures", nargs="+", default=["Arabic", "German"])
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--mode", default="in", choices=["in", "cross"])
    parser.add_argument("--style", default="guided", choices=["guided", "free"])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rpm", type=float, default=12000.0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests the mock fails")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    ratios = []
    for index in range(args.repeat):
        print(f"--- run {index + 1} of {args.repeat}")
        code, wall, span, served, manifest = culturepark_once(args, ",".join(args.cultures))
        chats = [r for r in served if r["path"].endswith("/chat/completions")]
        work = len(served) * args.latency / args.concurrency
        chain = (2 * args.turns + ROUNDS_AFTER_DIALOGUE) * args.latency
        bound = max(work, chain)
        ratio = span / bound
        ratios.append(ratio)
        counts = manifest["counts"]
        print(f"exit code                 {code}")
        print(
            f"dialogues                 {counts['dialogues']} ({', '.join(args.cultures)} x {args.seeds} seeds; "
            f"{counts['skipped_questions']} questions never asked skipped)"
        )
        print(
            f"requests                  {len(served)} ({len(chats)} chat, {len(served) - len(chats)} embedding)"
        )
        print(f"opinions                  {json.dumps(counts['opinions'])}")
        print(f"wall time                 {wall:.2f} s (run {span:.2f} s, the rest is start-up)")
        print(f"work bound                {work:.2f} s (requests x latency / concurrency)")
        print(f"chain bound               {chain:.2f} s ((2 x turns + {ROUNDS_AFTER_DIALOGUE}) x latency)")
        print(f"ratio                     {ratio:.2f} (run / max of the bounds)")
        window10 = busiest_window([r["at"] for r in served], 10.0)
        print(
            f"busiest 10 s window       {window10} requests = {window10 * 6} per minute (limit {args.rpm:g})"
        )
    print(
        f"median ratio              {statistics.median(ratios):.2f} (runs: {' '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
