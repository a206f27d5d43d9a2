"""How many of a run's samples keep their seed's meaning, by a person's reading.

A review is a TSV file (seed_id, stage, verdict, text, note) in which someone read every sample of a
run and wrote `same`, `changed` or `ungrammatical`. This script applies a review to a run's
`samples.jsonl`: it prints the share that keeps the meaning, how many seeds yield, and lists every
sample the review has not read, so a changed default run cannot reuse an old count unnoticed.

    python -m bench.fidelity_review runs/X [--review bench/fidelity/default-run-review.tsv]

Exit status 0 when every sample was reviewed, 1 when some were not, 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REVIEW = Path(__file__).parent / "fidelity" / "default-run-review.tsv"
VERDICTS = ("same", "changed", "ungrammatical")


@dataclass(frozen=True)
class FidelityReport:
    samples: int
    verdicts: Counter
    unreviewed: list[str]
    seeds: int
    seeds_yielding: int

    @property
    def kept_share(self) -> float:
        reviewed = sum(self.verdicts.values())
        return self.verdicts["same"] / reviewed if reviewed else 0.0


def read_review(path: Path) -> dict[str, str]:
    """text -> verdict."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    review: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        verdict = (row.get("verdict") or "").strip()
        if verdict not in VERDICTS or not row.get("text"):
            raise ValueError(
                f"{path}:{number}: verdict must be one of {', '.join(VERDICTS)} (got {verdict!r})"
            )
        review[row["text"]] = verdict
    return review


def apply_review(samples: list[dict], review: dict[str, str], seeds: int) -> FidelityReport:
    verdicts: Counter = Counter()
    unreviewed: list[str] = []
    for sample in samples:
        verdict = review.get(sample["text"])
        if verdict is None:
            unreviewed.append(sample["text"])
        else:
            verdicts[verdict] += 1
    return FidelityReport(
        samples=len(samples),
        verdicts=verdicts,
        unreviewed=unreviewed,
        seeds=seeds,
        seeds_yielding=len({s["seed_id"] for s in samples}),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fidelity_review", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run", type=Path, help="An augment run directory (samples.jsonl, manifest.json).")
    parser.add_argument("--review", type=Path, default=DEFAULT_REVIEW, help="The review TSV file.")
    args = parser.parse_args(argv)
    try:
        samples = [
            json.loads(line)
            for line in (args.run / "samples.jsonl").read_text(encoding="utf-8").splitlines()
            if line
        ]
        manifest = json.loads((args.run / "manifest.json").read_text(encoding="utf-8"))
        review = read_review(args.review)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = apply_review(samples, review, seeds=int(manifest.get("counts", {}).get("seeds", 0)))
    reviewed = sum(report.verdicts.values())
    print(
        f"{report.samples} samples, {reviewed} reviewed: {report.verdicts['same']} keep the meaning "
        f"({report.kept_share:.1%}), {report.verdicts['changed']} change it, "
        f"{report.verdicts['ungrammatical']} ungrammatical; {report.seeds_yielding} of {report.seeds} seeds yield"
    )
    for text in report.unreviewed:
        print(f"not reviewed: {text}")
    return 0 if not report.unreviewed else 1


if __name__ == "__main__":
    sys.exit(main())
