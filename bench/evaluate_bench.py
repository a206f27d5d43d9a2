"""Throughput of `evaluate` against the mock OpenAI server: 9 shipped tasks x 100 items by default.

    .venv/bin/python -m bench.evaluate_bench --items 100 --concurrency 32 --latency 0.2 --repeat 3

The mock server runs in its own process (as a provider would). The ideal is items x models x latency /
concurrency (every slot busy all the time); the ratio is the run's span over it, the target 1.25.
The run's span is the manifest's duration: scoring, the report and the plots at the end included.
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


def evaluate_once(args: argparse.Namespace) -> tuple[int, float, float, list[dict], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.jsonl"
        server, base_url = start_mock(args.latency, log)
        out = Path(tmp) / "run"
        try:
            models = [flag for index in range(args.models) for flag in ("--model", f"openai:mock-{index}")]
            command = [
                sys.executable, str(Path(__file__).resolve().parent.parent / "cli.py"), "evaluate", "--quiet",
                *models, "--base-url", base_url, "--limit-per-task", str(args.items),
                "--concurrency", str(args.concurrency), "--rpm", str(args.rpm), "--out", str(out),
            ]  # fmt: skip
            started = time.perf_counter()
            code = subprocess.run(command, env={**os.environ, "OPENAI_API_KEY": BENCH_KEY}).returncode
            wall = time.perf_counter() - started
            manifest = json.loads((out / "manifest.json").read_text())
        finally:
            server.terminate()
            server.wait()
        requests = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    served = [r for r in requests if r["path"].endswith("/chat/completions")]
    return code, wall, manifest["duration_s"], served, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100, help="items per task (a stratified sample)")
    parser.add_argument("--models", type=int, default=1, help="mock models side by side")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rpm", type=float, default=12000.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    ratios = []
    for index in range(args.repeat):
        print(f"--- run {index + 1} of {args.repeat}")
        code, wall, span, served, manifest = evaluate_once(args)
        answers = manifest["counts"]["answered"]
        ideal = answers * args.latency / args.concurrency
        ratios.append(span / ideal)
        print(f"exit code                 {code}")
        print(
            f"answers                   {answers} ({len(manifest['tasks'])} tasks x {args.items} items x {args.models} models)"
        )
        print(f"requests                  {len(served)}")
        print(f"wall time                 {wall:.2f} s (run {span:.2f} s, the rest is start-up)")
        print(f"ideal time                {ideal:.2f} s (answers x latency / concurrency)")
        print(f"ratio                     {span / ideal:.2f}")
        window10 = busiest_window([r["at"] for r in served], 10.0)
        print(
            f"busiest 10 s window       {window10} requests = {window10 * 6} per minute (limit {args.rpm:g})"
        )
    print(
        f"median ratio              {statistics.median(ratios):.2f} (runs: {' '.join(f'{r:.2f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
