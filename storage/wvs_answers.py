"""Per-country World Values Survey answer files (`<ISO3>.csv`), read into answer counts per question.

The files are the survey as extracted, warts included: missing codes are negative numbers, and the last
rows are summary lines (`Avg`, `Avg_First`, `Avg_Last`) that are not respondents. This module keeps
every integer code it reads; deciding which codes are real answers needs the question's option scale
and happens in `builders.labels`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

COUNTRY_NUMBER_COLUMN = "B_COUNTRY"
COUNTRY_CODE_COLUMN = "B_COUNTRY_ALPHA"


class AnswersFileError(ValueError):
    """An answers file is missing, unreadable or lacks the columns a build needs."""


@dataclass(frozen=True)
class CountryAnswers:
    """How many respondents of one country gave each code to each question (missing codes included)."""

    country: str
    path: Path
    respondents: int
    counts: dict[str, Counter[int]]


def question_column(q_id: str) -> str:
    return f"Q{q_id}"


def find_country_file(country: str, directories: Sequence[Path]) -> Path:
    """The first `<country>.csv` in `directories`, so a user's directory can shadow the shipped one."""
    for directory in directories:
        candidate = directory / f"{country}.csv"
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(directory) for directory in directories)
    raise AnswersFileError(f"no answers file {country}.csv for country {country!r} in: {searched}")


def _is_respondent(row: list[str]) -> bool:
    # Summary rows carry a label such as "Avg" where respondents carry the numeric country code.
    return bool(row) and row[0].strip().isdigit()


def _answer_code(cell: str) -> int | None:
    """The integer code in a cell, or None for a blank or non-integer cell (which is not an answer)."""
    try:
        return int(cell.strip())
    except ValueError:
        return None


def _codes(cells: Counter[str]) -> Counter[int]:
    codes: Counter[int] = Counter()
    for cell, n in cells.items():
        code = _answer_code(cell)
        if code is not None:
            codes[code] += n
    return codes


def read_country_answers(path: Path, country: str, q_ids: Iterable[str]) -> CountryAnswers:
    """Count the codes each respondent of `path` gave to the questions `q_ids`."""
    wanted = list(q_ids)
    try:
        # utf-8-sig: a user's file saved by a spreadsheet often starts with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = csv.reader(handle)
            header = [name.strip() for name in next(rows, [])]
            required = [COUNTRY_NUMBER_COLUMN, COUNTRY_CODE_COLUMN, *map(question_column, wanted)]
            missing = [name for name in required if name not in header]
            if missing:
                raise AnswersFileError(f"{path}: missing columns {', '.join(missing)}")
            code_index = header.index(COUNTRY_CODE_COLUMN)
            respondents = []
            for line_number, row in enumerate(rows, start=2):
                if not _is_respondent(row):
                    continue
                if len(row) < len(header):
                    raise AnswersFileError(
                        f"{path}: line {line_number} has {len(row)} cells, expected {len(header)}"
                    )
                if row[code_index].strip() != country:
                    raise AnswersFileError(
                        f"{path}: line {line_number} has {COUNTRY_CODE_COLUMN} {row[code_index]!r}, expected {country!r}"
                    )
                respondents.append(row[: len(header)])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AnswersFileError(f"{path}: cannot read answers: {exc}") from exc
    # Counting the raw cells column by column and parsing each distinct cell once keeps a 3000-row
    # file at a few milliseconds; parsing cell by cell made a CultureLLM-One build take seconds.
    columns = list(zip(*respondents, strict=True)) if respondents else [()] * len(header)
    counts = {q_id: _codes(Counter(columns[header.index(question_column(q_id))])) for q_id in wanted}
    return CountryAnswers(country=country, path=path, respondents=len(respondents), counts=counts)


def load_countries(
    countries: Iterable[str], q_ids: Sequence[str], directories: Sequence[Path]
) -> dict[str, CountryAnswers]:
    """Answers of each country, read once however many cultures share it."""
    return {
        country: read_country_answers(find_country_file(country, directories), country, q_ids)
        for country in dict.fromkeys(countries)
    }
