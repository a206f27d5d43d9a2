"""CulturePark opinions (`opinions.jsonl` of a culturepark run) as training examples.

A CulturePark example asks the seed's own WVS prompt and answers it the way a seed example does, with
the culture's label, then gives one verified opinion of the culture as the reason:

    3
    Reason: I think a child should learn to be independent early, as my parents taught me.

The label comes first and alone on its line, so a model trained on both kinds of examples still opens
its answer with the number that evaluation reads, and the reason teaches why.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from builders.labels import CultureLabel
from storage.jsonl import read_jsonl_records
from storage.records import OpinionRecord
from storage.run_store import MANIFEST, read_manifest

# The run's file name, as graphs.culturepark_job.OPINIONS writes it; not imported from there because
# that module pulls in the whole CulturePark graph and its model stack.
OPINIONS_FILE = "opinions.jsonl"
COMMAND = "culturepark"
# A run that stopped early has not had its run-wide near-duplicate pass, which happens at the end.
FINISHED = ("completed", "completed_with_failures")
REASON = "Reason: "


class OpinionsError(ValueError):
    """A CulturePark run that cannot be used; the message names the directory or file and line."""


def opinion_answer(label: int, opinion: str) -> str:
    """The assistant's answer of a CulturePark example: the label, then the opinion as its reason."""
    return f"{label}\n{REASON}{opinion}"


def load_opinions(run_dir: Path, seed_ids: Collection[str], seeds_path: Path) -> list[OpinionRecord]:
    """Every opinion of a finished culturepark run, refusing opinions of seeds the seed set lacks."""
    flag = f"--culturepark {run_dir}"
    if not run_dir.exists():
        raise OpinionsError(f"{flag} does not exist")
    if not run_dir.is_dir():
        raise OpinionsError(f"{flag} is not a directory")
    manifest = read_manifest(run_dir / MANIFEST)
    if manifest is None:
        raise OpinionsError(f"{flag} is not a culturepark run (no readable {MANIFEST})")
    if manifest.get("command") != COMMAND:
        raise OpinionsError(f"{flag} is a {manifest.get('command')!r} run, not a culturepark run")
    if manifest.get("status") not in FINISHED:
        raise OpinionsError(
            f"{flag} is not a finished culturepark run (status {manifest.get('status')!r}); resume it first"
        )
    path = run_dir / OPINIONS_FILE
    if not path.is_file():
        raise OpinionsError(f"{flag} holds no {OPINIONS_FILE}")
    records = read_jsonl_records(path, OpinionRecord, kind="opinions file", error=OpinionsError)
    unknown: dict[str, int] = {}
    for number, record in records:
        if record.seed_id not in seed_ids:
            unknown.setdefault(record.seed_id, number)
    if unknown:
        # One line for the whole file, as for samples: a run of another seed set is wrong throughout.
        named = ", ".join(f"'{seed_id}' (line {line})" for seed_id, line in list(unknown.items())[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise OpinionsError(f"{path}: seed_id {named}{more} not in the seed set {seeds_path}")
    return [record for _, record in records]


@dataclass
class SelectedOpinions:
    """The opinions of the build's cultures, ready to become examples."""

    texts: dict[tuple[str, str], list[str]]  # (culture, q_id) -> distinct opinions, sorted
    repeats: int  # opinions dropped as exact (case-insensitive) repeats within a culture and question
    mismatched: list[OpinionRecord]  # verified against a label other than this build's


def select_opinions(
    records: Iterable[OpinionRecord],
    cultures: Collection[str],
    labels: Mapping[tuple[str, str], CultureLabel],
) -> SelectedOpinions:
    """Opinions of the selected cultures, grouped by question; others are ignored.

    Sorted, so the examples do not depend on the order the async run finished its dialogues in. An
    opinion whose run label differs from this build's label (a run made with another --label method,
    or other answer files) is kept, answered with this build's label, and listed in `mismatched`.
    """
    texts: dict[tuple[str, str], list[str]] = {}
    seen: set[tuple[str, str, str]] = set()
    repeats = 0
    mismatched = []
    for record in records:
        if record.culture not in cultures:
            continue
        key = (record.culture, record.seed_id)
        text = " ".join(record.opinion.split())
        if (*key, text.casefold()) in seen:
            repeats += 1
            continue
        seen.add((*key, text.casefold()))
        texts.setdefault(key, []).append(text)
        label = labels[key].label
        if label is not None and label != record.label:
            mismatched.append(record)
    return SelectedOpinions(
        texts={key: sorted(found) for key, found in texts.items()}, repeats=repeats, mismatched=mismatched
    )


def describe_mismatches(
    mismatched: list[OpinionRecord], labels: Mapping[tuple[str, str], CultureLabel]
) -> str:
    """One warning line for opinions whose run label is not this build's."""
    pairs = dict.fromkeys(
        (record.culture, record.seed_id, record.label, labels[(record.culture, record.seed_id)].label)
        for record in mismatched
    )
    shown = "; ".join(
        f"{culture} Q{q_id}: run {run}, build {build}" for culture, q_id, run, build in list(pairs)[:3]
    )
    more = f"; and {len(pairs) - 3} more questions" if len(pairs) > 3 else ""
    return (
        f"{len(mismatched)} CulturePark opinions were verified against another label than this build's "
        f"({shown}{more}); they are answered with this build's label"
    )
