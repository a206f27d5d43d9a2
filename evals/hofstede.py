"""Hofstede's six culture dimensions from a model's answers to the VSM 2013 questionnaire.

The pieces of `evaluate --suite hofstede`, all pure: the data (`data/hofstede/`: the 24 items, the
published country scores, which countries speak for each culture), the prompt of one item and the
parser of its answer, item means from sampled answers or from option probabilities, the six indices
of the VSM 2013 manual, and the comparison with a culture's published scores.

Two rules keep the numbers honest. An answer that cannot be read is left out and counted, never scored
as an off-scale value; an item without a valid answer has no mean, and an index that needs it is None.
And the distance to the published scores is a root-mean-square over the dimensions the reference has,
so a culture scored on two dimensions compares with one scored on six.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from builders.prompt import culture_system_prompt
from evals.parsing import parse_label
from prompts import Message, template

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "hofstede"
DEFAULT_ITEMS_FILE = DATA_DIR / "vsm13.jsonl"
DEFAULT_SCORES_FILE = DATA_DIR / "6-dimensions-2015-08-16.csv"
DEFAULT_CULTURE_COUNTRIES_FILE = DATA_DIR / "culture_countries.json"

VSM_ITEM_PROMPT = "vsm_item_v1"

DIMENSIONS = ("pdi", "idv", "mas", "uai", "lto", "ivr")
ITEM_IDS = tuple(range(1, 25))
OPTION_CODES = (1, 2, 3, 4, 5)
DEFAULT_CONSTANT = 50.0


class HofstedeDataError(ValueError):
    """Malformed Hofstede data or inputs: a file, a culture map, item means, answers, constants."""


class Term(NamedTuple):
    """`weight * (m[plus] - m[minus])`: one of the two terms of an index."""

    weight: float
    plus: int
    minus: int


# The VSM 2013 manual's formulas; each index adds its dimension's constant.
FORMULAS: dict[str, tuple[Term, Term]] = {
    "pdi": (Term(35, 7, 2), Term(25, 20, 23)),
    "idv": (Term(35, 4, 1), Term(35, 9, 6)),
    "mas": (Term(35, 5, 3), Term(35, 8, 10)),
    "uai": (Term(40, 18, 15), Term(25, 21, 24)),
    "lto": (Term(40, 13, 14), Term(25, 19, 22)),
    "ivr": (Term(35, 12, 11), Term(40, 17, 16)),
}

# The CSV's column for each dimension; LTO is the WVS-based score of the 2010 edition.
_SCORE_COLUMNS = {"pdi": "pdi", "idv": "idv", "mas": "mas", "uai": "uai", "lto": "ltowvs", "ivr": "ivr"}
_MISSING_SCORE = {"", "#NULL!"}

Scores = dict[str, dict[str, float | None]]
_ENTRY_SHAPE = '{"countries": ["CSV code", ...], "note": "..."}'


def items_of(dimension: str) -> tuple[int, ...]:
    """The items an index is computed from, in item order."""
    return tuple(sorted({item for term in FORMULAS[dimension] for item in (term.plus, term.minus)}))


# --- data files -------------------------------------------------------------------------------------


class VsmItem(BaseModel):
    """One content item of the questionnaire, as a line of `vsm13.jsonl` holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=1, le=24, description="The item number the index formulas use.")
    stem: str | None = Field(description="The lead-in a block of items shares; None for a lone item.")
    item: str = Field(min_length=1, description="The item's own wording.")
    options: dict[int, str] = Field(description="Answer code 1..5 to its wording.")

    @field_validator("stem")
    @classmethod
    def _stem_not_blank(cls, stem: str | None) -> str | None:
        if stem is not None and not stem.strip():
            raise ValueError("a stem is text or null, not blank")
        return stem

    @field_validator("options")
    @classmethod
    def _five_worded_options(cls, options: dict[int, str]) -> dict[int, str]:
        if sorted(options) != list(OPTION_CODES):
            raise ValueError(f"options must be numbered 1..5, got {sorted(options)}")
        blank = [code for code, wording in options.items() if not wording.strip()]
        if blank:
            raise ValueError(f"option {blank[0]} has no wording")
        return dict(sorted(options.items()))


@dataclass(frozen=True)
class CultureCountries:
    """The rows of the scores file that speak for a culture, and why (free text)."""

    countries: tuple[str, ...]
    note: str = ""


def load_vsm_items(path: Path = DEFAULT_ITEMS_FILE) -> tuple[VsmItem, ...]:
    """All 24 items, in item order."""
    items: dict[int, VsmItem] = {}
    for number, line in enumerate(_read_text(path, "VSM items file").split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HofstedeDataError(f"{where}: not valid JSON ({exc.msg})") from None
        try:
            item = VsmItem.model_validate(row)
        except ValidationError as exc:
            raise HofstedeDataError(f"{where}: {_first_error(exc)}") from None
        if item.id in items:
            raise HofstedeDataError(f"{where}: item {item.id} appears a second time")
        items[item.id] = item
    missing = [item_id for item_id in ITEM_IDS if item_id not in items]
    if missing:
        raise HofstedeDataError(f"VSM items file {path} lacks item(s) {_join(missing)}")
    return tuple(items[item_id] for item_id in ITEM_IDS)


def load_country_scores(path: Path = DEFAULT_SCORES_FILE) -> Scores:
    """Country code (the file's own, upper case) -> dimension -> score, None where the file has none."""
    lines = _read_text(path, "Hofstede scores file").split("\n")
    rows = [(number, fields) for number, fields in _csv_rows(lines) if any(f.strip() for f in fields)]
    if not rows:
        raise HofstedeDataError(f"Hofstede scores file {path} is empty")
    header_line, header = rows[0]
    columns = [name.strip().casefold() for name in header]
    wanted = {"ctr": "ctr", **_SCORE_COLUMNS}
    missing = [column for column in wanted.values() if column not in columns]
    if missing:
        raise HofstedeDataError(
            f"{path}:{header_line}: header lacks column(s) {', '.join(missing)} "
            f"(expected ';'-separated: ctr;country;pdi;idv;mas;uai;ltowvs;ivr)"
        )
    at = {key: columns.index(column) for key, column in wanted.items()}
    scores: Scores = {}
    for number, fields in rows[1:]:
        where = f"{path}:{number}"
        if len(fields) != len(columns):
            raise HofstedeDataError(f"{where}: {len(fields)} fields, the header has {len(columns)}")
        code = fields[at["ctr"]].strip().upper()
        if not code:
            raise HofstedeDataError(f"{where}: no country code in column ctr")
        if code in scores:
            raise HofstedeDataError(f"{where}: country code {code!r} appears a second time")
        scores[code] = {
            dimension: _score(fields[at[dimension]], where, _SCORE_COLUMNS[dimension])
            for dimension in DIMENSIONS
        }
    return scores


def load_culture_countries(
    path: Path = DEFAULT_CULTURE_COUNTRIES_FILE, scores: Mapping[str, object] | None = None
) -> dict[str, CultureCountries]:
    """Culture -> the score rows that speak for it; with `scores`, every code must be one of its rows.

    The file is `{"Culture": {"countries": ["CSV code", ...], "note": "free text"}, ...}`.
    """
    try:
        data = json.loads(_read_text(path, "culture countries file"))
    except json.JSONDecodeError as exc:
        raise HofstedeDataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not data:
        raise HofstedeDataError(
            f'culture countries file {path} must be a JSON object {{"Culture": {_ENTRY_SHAPE}, ...}}'
        )
    cultures: dict[str, CultureCountries] = {}
    for culture, entry in data.items():
        where = f"culture countries file {path}: {culture!r}"
        if not culture.strip():
            raise HofstedeDataError(f"culture countries file {path}: a culture name is blank")
        if not isinstance(entry, dict) or set(entry) - {"countries", "note"}:
            raise HofstedeDataError(f"{where} must map to {_ENTRY_SHAPE}")
        countries, note = entry.get("countries"), entry.get("note", "")
        if (
            not isinstance(countries, list)
            or not countries
            or not all(isinstance(code, str) and code.strip() for code in countries)
        ):
            raise HofstedeDataError(f'{where}: "countries" must be a non-empty list of country codes')
        if not isinstance(note, str):
            raise HofstedeDataError(f'{where}: "note" must be text')
        codes = tuple(dict.fromkeys(code.strip().upper() for code in countries))
        unknown = [code for code in codes if scores is not None and code not in scores]
        if unknown:
            raise HofstedeDataError(
                f"{where} names country code(s) {_quoted(unknown)}, which the scores lack"
            )
        cultures[culture.strip()] = CultureCountries(codes, note)
    return cultures


def _read_text(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise HofstedeDataError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise HofstedeDataError(f"{what} {path} cannot be read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise HofstedeDataError(f"{path}:{line}: not valid UTF-8") from None


def _csv_rows(lines: list[str]) -> list[tuple[int, list[str]]]:
    # One physical line per row: the file has no quoted fields spanning lines, and line numbers in
    # error messages must point at the line the user sees.
    return [(number, next(csv.reader([line], delimiter=";"))) for number, line in enumerate(lines, 1)]


def _score(field: str, where: str, column: str) -> float | None:
    text = field.strip()
    if text in _MISSING_SCORE:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise HofstedeDataError(f"{where}: column {column} holds {text!r}, not a score or #NULL!")
    return value


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _quoted(codes: Sequence[str]) -> str:
    return ", ".join(repr(code) for code in codes)


def _join(numbers: Sequence[int]) -> str:
    return ", ".join(str(number) for number in numbers)


# --- the question and its answer --------------------------------------------------------------------


def vsm_item_messages(item: VsmItem, culture: str) -> list[Message]:
    """The chat that asks `item` of a model as a person of `culture`, with the culture's system prompt."""
    return template(VSM_ITEM_PROMPT).render(
        system=culture_system_prompt(culture),
        stem=item.stem,
        item=item.item,
        options=list(item.options.items()),
    )


_DECIMAL = re.compile(r"\d+[.,]\d+")
_OPTION_WORD = re.compile(r"\b(?:option|choice)\s*(?:no\.?|number|#)?\s*(?=[1-5](?!\d))", re.IGNORECASE)
_DIGIT_AT_LINE_END = re.compile(r"(?<=\b[1-5])[ \t]*(?=\r?\n)")


def parse_vsm_answer(text: str, options: Mapping[int, str]) -> int | None:
    """The option an answer commits to, or None (no option, two options, a refusal, a number between).

    The downstream label parser reads the answer, with the option codes as labels and their wording as
    meanings ("2", "Answer: 2", "Very important."). Three habits of numeric answers are settled first:
    a number between two options ("2.5") is no option, "Option 3" names option 3, and a code that ends a
    line ("2", then an explanation below it) stands alone as it would before a full stop.
    """
    if not isinstance(text, str):
        return None
    text = _DECIMAL.sub(" ~ ", text)
    text = _OPTION_WORD.sub("", text)
    text = _DIGIT_AT_LINE_END.sub(".", text, count=1)
    labels = [str(code) for code in sorted(options)]
    label = parse_label(text, labels, {str(code): wording for code, wording in options.items()})
    return None if label is None else int(label)


# --- item means -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerSummary:
    """Item means from K sampled answers per item, and what could not be read."""

    means: dict[int, float]  # items with at least one valid answer
    valid: dict[int, int]  # valid answers per item
    unparsable: dict[int, int]  # unreadable answers per item, excluded from the means
    unanswered: tuple[int, ...]  # items without a valid answer: no mean, and their indices are None


def item_means_from_answers(answers: Mapping[int, Sequence[int | None]]) -> AnswerSummary:
    """Mean answer per item over its valid answers; None marks an answer the parser could not read."""
    means: dict[int, float] = {}
    valid: dict[int, int] = {}
    unparsable: dict[int, int] = {}
    for item_id in sorted(answers):
        _check_item_id(item_id)
        codes = []
        for answer in answers[item_id]:
            if answer is not None and (
                isinstance(answer, bool) or not isinstance(answer, int) or answer not in OPTION_CODES
            ):
                raise HofstedeDataError(
                    f"item {item_id}: answer {answer!r} is not an option 1..5 (None marks an unreadable one)"
                )
            if answer is not None:
                codes.append(answer)
        valid[item_id] = len(codes)
        unparsable[item_id] = len(answers[item_id]) - len(codes)
        if codes:
            means[item_id] = sum(codes) / len(codes)
    unanswered = tuple(item_id for item_id in sorted(answers) if valid[item_id] == 0)
    return AnswerSummary(means, valid, unparsable, unanswered)


def item_means_from_distributions(dists: Mapping[int, Mapping[int, float]]) -> dict[int, float]:
    """Expected answer per item from option probabilities (normalised, so raw weights will do)."""
    means: dict[int, float] = {}
    for item_id in sorted(dists):
        _check_item_id(item_id)
        dist = dists[item_id]
        outside = [code for code in dist if isinstance(code, bool) or code not in OPTION_CODES]
        if outside:
            raise HofstedeDataError(f"item {item_id}: option {outside[0]!r} is not one of 1..5")
        bad = [p for p in dist.values() if not (isinstance(p, int | float) and math.isfinite(p) and p >= 0)]
        if bad:
            raise HofstedeDataError(f"item {item_id}: probability {bad[0]!r} is not a finite number >= 0")
        total = sum(dist.values())
        if total <= 0:
            raise HofstedeDataError(f"item {item_id}: the distribution puts no weight on any option")
        means[item_id] = sum(code * p for code, p in dist.items()) / total
    return means


def _check_item_id(item_id: object) -> None:
    if isinstance(item_id, bool) or item_id not in ITEM_IDS:
        raise HofstedeDataError(f"item {item_id!r} is not a VSM 2013 item (1..24)")


# --- indices ----------------------------------------------------------------------------------------


def vsm_indices(
    item_means: Mapping[int, float], constants: Mapping[str, float] | float = DEFAULT_CONSTANT
) -> dict[str, float]:
    """The six indices of the VSM 2013 manual; every item a formula uses must have a mean."""
    missing = [item_id for item_id in ITEM_IDS if item_id not in item_means]
    if missing:
        raise HofstedeDataError(f"no mean for VSM item(s) {_join(missing)}: the six indices need all 24")
    indices = partial_vsm_indices(item_means, constants)
    return {dimension: value for dimension, value in indices.items() if value is not None}


def partial_vsm_indices(
    item_means: Mapping[int, float], constants: Mapping[str, float] | float = DEFAULT_CONSTANT
) -> dict[str, float | None]:
    """The six indices, None for each one that needs an item without a mean."""
    constant_of = _constants(constants)
    for item_id, mean in item_means.items():
        _check_item_id(item_id)
        if isinstance(mean, bool) or not isinstance(mean, int | float) or not 1 <= mean <= 5:
            raise HofstedeDataError(f"item {item_id}: mean {mean!r} is off the 1..5 answer scale")
    indices: dict[str, float | None] = {}
    for dimension, terms in FORMULAS.items():
        if any(item_id not in item_means for item_id in items_of(dimension)):
            indices[dimension] = None
            continue
        indices[dimension] = constant_of[dimension] + sum(
            term.weight * (item_means[term.plus] - item_means[term.minus]) for term in terms
        )
    return indices


def _constants(constants: Mapping[str, float] | float) -> dict[str, float]:
    if isinstance(constants, Mapping):
        unknown = sorted(set(constants) - set(DIMENSIONS))
        missing = [dimension for dimension in DIMENSIONS if dimension not in constants]
        if unknown or missing:
            raise HofstedeDataError(
                f"constants need exactly the dimensions {', '.join(DIMENSIONS)}"
                + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "")
                + (f"; missing: {', '.join(missing)}" if missing else "")
            )
        values = dict(constants)
    else:
        values = dict.fromkeys(DIMENSIONS, constants)
    for dimension, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise HofstedeDataError(f"constant for {dimension} is {value!r}, not a finite number")
    return {dimension: float(value) for dimension, value in values.items()}


# --- reference and comparison -----------------------------------------------------------------------


def reference_scores(
    culture: str,
    scores: Mapping[str, Mapping[str, float | None]],
    culture_map: Mapping[str, CultureCountries],
) -> dict[str, float]:
    """Per dimension, the mean score of the culture's countries that have one; unscored ones are absent."""
    found = [name for name in culture_map if name.casefold() == culture.strip().casefold()]
    if not found:
        raise HofstedeDataError(
            f"culture {culture!r} has no Hofstede countries (known: {', '.join(sorted(culture_map))})"
        )
    countries = culture_map[found[0]].countries
    unknown = [code for code in countries if code not in scores]
    if unknown:
        raise HofstedeDataError(
            f"culture {found[0]!r} names country code(s) {_quoted(unknown)}, which the scores lack"
        )
    reference: dict[str, float] = {}
    for dimension in DIMENSIONS:
        values = [scores[code].get(dimension) for code in countries]
        scored = [value for value in values if value is not None]
        if scored:
            reference[dimension] = sum(scored) / len(scored)
    return reference


@dataclass(frozen=True)
class Comparison:
    """A model's indices against a reference, over the dimensions both have."""

    dimensions: tuple[str, ...]  # compared, in DIMENSIONS order
    signed_error: dict[str, float]  # model - reference
    absolute_error: dict[str, float]
    rms: float | None  # root-mean-square error over `dimensions`; None when nothing was compared
    not_in_model: tuple[str, ...]  # the reference has them, the model's indices do not (None)


def compare(model: Mapping[str, float | None], reference: Mapping[str, float]) -> Comparison:
    """Per-dimension errors and their RMS over the dimensions the reference has.

    A mean over dimensions rather than a sum (a Euclidean distance) keeps a culture with two scored
    dimensions comparable with one that has six.
    """
    unknown = sorted(set(model) - set(DIMENSIONS)) + sorted(set(reference) - set(DIMENSIONS))
    if unknown:
        raise HofstedeDataError(f"unknown dimension {unknown[0]!r} (known: {', '.join(DIMENSIONS)})")
    signed = {
        d: float(value) - float(reference[d])
        for d in DIMENSIONS
        if d in reference and (value := model.get(d)) is not None
    }
    rms = math.sqrt(sum(error**2 for error in signed.values()) / len(signed)) if signed else None
    return Comparison(
        dimensions=tuple(signed),
        signed_error=signed,
        absolute_error={d: abs(error) for d, error in signed.items()},
        rms=rms,
        not_in_model=tuple(d for d in DIMENSIONS if d in reference and model.get(d) is None),
    )
