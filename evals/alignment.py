"""How close a model's answers to WVS seed questions come to a culture's survey answers.

For each culture and seed question the model is asked exactly as build-dataset's fine-tuning examples ask
it (`question_messages`), and its answer distribution (from option log-probabilities or from K sampled
answers) is compared with the distribution of the culture's valid survey answers:

- `mode_match`: the model's most likely option is the survey's mode. Ties go to the lowest code on both
  sides, the rule `builders.labels` labels with.
- `scale_error`: |E[model] - E[survey]| / (highest code - lowest code), in 0..1. Expectations use the
  scale's own codes (0..2, 1..4, 1..10), so a 1..10 item is not worth more than a 0..2 one.
- `js_divergence`: Jensen-Shannon divergence with base-2 logarithms, in 0..1 (0 for identical
  distributions, 1 for disjoint ones), over the union of the options either side gives mass.

The survey side reuses `builders.labels` (valid codes only, every country weighs the same, exact
fractions). A question none of a culture's countries was asked has no survey distribution: it is
reported as skipped and never scored against an invented answer. A question the model never answered
validly has no model distribution: it is reported as unanswered and not scored either.

A culture's averages are unweighted means over its scored questions, each with a percentile bootstrap
interval over questions (`evals.metrics.percentile_interval`); the three metrics share the resamples.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from builders.build import CARD_FILE, DEFAULT_ANSWERS_DIR, LABELS_FILE
from builders.cultures import CultureError, load_cultures, select_cultures
from builders.formats import write_jsonl
from builders.labels import culture_distribution, mode_label, valid_answers
from builders.prompt import wvs_messages
from builders.scales import OptionScale, ScaleError, parse_option_scale
from evals.metrics import percentile_interval
from evals.parsing import parse_label
from prompts import Message
from storage.records import Seed
from storage.seeds import SeedFileError, load_seeds
from storage.wvs_answers import AnswersFileError, CountryAnswers, load_countries

SHARE_DECIMALS = 4


class AlignmentDataError(ValueError):
    """An input of a WVS alignment evaluation that cannot be used; the one-line message names the file
    (and line, where there is one)."""


# --- the survey side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SurveyQuestion:
    """A seed question some of a culture's countries answered, with the culture's answer shares."""

    culture: str
    seed: Seed
    scale: OptionScale
    distribution: dict[int, Fraction]  # valid codes only, each answering country weighted equally
    n_valid_by_country: dict[str, int]

    @property
    def q_id(self) -> str:
        return self.seed.q_id

    @property
    def mode(self) -> int:
        return mode_label(self.distribution)


@dataclass(frozen=True)
class CultureQuestions:
    culture: str
    scorable: list[SurveyQuestion]
    skipped: list[str]  # q_ids none of the culture's countries gave a valid answer to


def seed_scale(seed: Seed) -> OptionScale:
    """The seed's option scale, parsed as build-dataset parses it (Q31's duplicated 4 repaired)."""
    try:
        return parse_option_scale(seed.option)
    except ScaleError as exc:
        raise AlignmentDataError(f"seed Q{seed.q_id}: {exc}") from None


def survey_distribution(
    scale: OptionScale, counts_by_country: Mapping[str, Counter[int]]
) -> dict[int, Fraction]:
    """The culture's shares of each valid answer, as build-dataset labels from them; empty when none of
    the countries gave a valid answer (the question was not asked there)."""
    return culture_distribution(
        {country: valid_answers(counts, scale) for country, counts in counts_by_country.items()}
    )


def culture_questions(
    culture: str, countries: Sequence[str], seeds: Sequence[Seed], answers: Mapping[str, CountryAnswers]
) -> CultureQuestions:
    """The seeds split into those the culture's survey answers can score and those it never asked."""
    missing = [country for country in countries if country not in answers]
    if missing:
        raise ValueError(f"{culture}: no survey answers loaded for {', '.join(missing)}")
    scorable, skipped = [], []
    for seed in seeds:
        scale = seed_scale(seed)
        counts = {country: _question_counts(answers[country], seed.q_id) for country in countries}
        distribution = survey_distribution(scale, counts)
        if not distribution:
            skipped.append(seed.q_id)
            continue
        scorable.append(
            SurveyQuestion(
                culture=culture,
                seed=seed,
                scale=scale,
                distribution=distribution,
                n_valid_by_country={c: valid_answers(n, scale).total() for c, n in counts.items()},
            )
        )
    return CultureQuestions(culture=culture, scorable=scorable, skipped=skipped)


def _question_counts(country: CountryAnswers, q_id: str) -> Counter[int]:
    if q_id not in country.counts:
        raise ValueError(f"answers of {country.country} ({country.path}) were read without Q{q_id}")
    return country.counts[q_id]


def load_culture_questions(
    culture: str,
    seeds: Sequence[Seed],
    *,
    answers_dirs: Sequence[Path] = (),
    cultures_file: Path | None = None,
) -> dict[str, CultureQuestions]:
    """Scorable and skipped questions of `culture` (or of every culture for 'all'), from the shipped
    survey answers and cultures, with the user's directories and file first as in build-dataset."""
    try:
        known = load_cultures(cultures_file)
        cultures = {name: known[name] for name in select_cultures(culture, known)}
        answers = load_countries(
            (country for countries in cultures.values() for country in countries),
            [seed.q_id for seed in seeds],
            [*answers_dirs, DEFAULT_ANSWERS_DIR],
        )
    except (CultureError, AnswersFileError) as exc:
        raise AlignmentDataError(str(exc)) from None
    return {name: culture_questions(name, countries, seeds, answers) for name, countries in cultures.items()}


def question_messages(culture: str, seed: Seed) -> list[Message]:
    """The system and user messages of build-dataset's seed example for (culture, seed), without the
    assistant's answer: the model is asked exactly as it was trained."""
    return wvs_messages(culture, seed.q_content, seed_scale(seed))


# --- the model side --------------------------------------------------------------------------------


def options_from_logprobs(option_logprobs: Mapping[int, float]) -> dict[int, float]:
    """Probabilities of the options from each option's summed token log-probability (a softmax).

    The largest log-probability is subtracted before exponentiating, so options at -1000 or -1e6 still
    share their mass instead of all underflowing to zero. An option at -inf gets probability 0.
    """
    if not option_logprobs:
        raise ValueError("no option log-probabilities to normalise")
    for code, logprob in option_logprobs.items():
        if math.isnan(logprob) or logprob == math.inf:
            raise ValueError(f"option {code} has log-probability {logprob!r}; expected a number below +inf")
    top = max(option_logprobs.values())
    if top == -math.inf:
        raise ValueError("every option has log-probability -inf: no option can be normalised")
    weights = {code: math.exp(logprob - top) for code, logprob in sorted(option_logprobs.items())}
    total = math.fsum(weights.values())
    return {code: weight / total for code, weight in weights.items()}


def distribution_from_samples(
    answers: Sequence[int | None], scale: OptionScale
) -> tuple[dict[int, float] | None, int]:
    """(share of each scale code among the valid answers, number of invalid answers).

    None marks an answer the parser could not read: it is counted and left out. When every answer is
    invalid there is no distribution (None): the question is unanswered, not scored as any option.
    """
    if not answers:
        raise ValueError("no sampled answers: K must be at least 1")
    off_scale = [answer for answer in answers if answer is not None and answer not in scale]
    if off_scale:
        raise ValueError(f"answer {off_scale[0]} is not on the scale {scale.low}..{scale.high}")
    valid = Counter(answer for answer in answers if answer is not None)
    invalid = len(answers) - valid.total()
    if not valid:
        return None, invalid
    return {code: valid[code] / valid.total() for code in scale.codes}, invalid


# --- parsing a model's answer ----------------------------------------------------------------------

# "3", "**3**", "- 3", "3. Disagree", "7/10"; not "2.5", "3rd" or "2024".
_LEADING_CODE = re.compile(r"^\W*?(\d{1,3})(?!\w)(?![.,]\d)")
# "-1" is WVS's don't-know code, not option 1; "2.5" lies between options, it is not option 5.
_NOT_A_CODE_START = re.compile(r"^\W*?(?:[-−]\d|\d+[.,]\d)")
# Two or more numbered options ("1. Strongly agree 2. Agree ...") echo the scale: no commitment.
_NUMBERED_OPTION = re.compile(r"(?:^|(?<=\s))(\d{1,3})[.)]\s+(?=[^\W\d_])")
_ALTERNATIVE = re.compile(r"^\s*(?:or|and|to|/|-|–|—|,)\s*\d", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\n|[.!?;](?=\s|$)")
_STRONGLY = "strongly"


def parse_wvs_answer(text: str, scale: OptionScale) -> int | None:
    """The option code an answer commits to, or None when it commits to no option or to two.

    1. An answer that lists two or more numbered options echoes the scale, and one that starts with a
       negative number ("-1", WVS's don't know) or a decimal ("2.5") commits to no option: None.
    2. An answer that starts with a whole number commits to it ("3", "3. Disagree", "7/10",
       "7 out of 10"), unless the number is off the scale, is followed by an alternative ("2 or 3",
       "2-3"), or the rest of its first sentence names another option ("3. Agree" where 3 is Disagree).
    3. Otherwise the option's number or wording is read by `evals.parsing.parse_label`, the rules every
       evaluate task uses: "Answer: 5", "I strongly agree", refusals and negations ("I do not agree")
       are None. "Strongly disagree" and "Disagree strongly" are read as the same option, since WVS
       prints both orders (Q27 and Q33) and models answer in either.
    """
    if not isinstance(text, str):
        return None
    answer = _in_scale_word_order(unicodedata.normalize("NFKC", text).strip(), scale)
    if _NOT_A_CODE_START.match(answer) or len({m.group(1) for m in _NUMBERED_OPTION.finditer(answer)}) > 1:
        return None
    labels = [str(code) for code in scale.codes]
    meanings = {str(option.code): option.label for option in scale.options}
    leading = _LEADING_CODE.match(answer)
    if leading:
        code = int(leading.group(1))
        rest = re.sub(rf"^\s*(?:/|out\s+of)\s*{scale.high}(?!\d)", "", answer[leading.end() :], flags=re.I)
        if code not in scale or _ALTERNATIVE.match(rest):
            return None
        rest = rest.lstrip(" \t.):-–—*")
        end = _SENTENCE_END.search(rest)
        named = parse_label(rest[: end.start()] if end else rest, labels, meanings)
        return code if named in (None, str(code)) else None
    found = parse_label(answer, labels, meanings)
    return None if found is None else int(found)


def _in_scale_word_order(text: str, scale: OptionScale) -> str:
    """`text` with "strongly X" / "X strongly" swapped into the order the scale prints that option in."""
    printed = {option.label.casefold() for option in scale.options}
    for option in scale.options:
        words = option.label.split()
        if len(words) != 2 or _STRONGLY not in (word.casefold() for word in words):
            continue
        swapped = f"{words[1]} {words[0]}"
        if swapped.casefold() in printed:
            continue  # both orders are options of their own: leave the answer as written
        pattern = rf"(?<!\w){re.escape(words[1])}\s+{re.escape(words[0])}(?!\w)"
        text = re.sub(pattern, option.label, text, flags=re.IGNORECASE)
    return text


# --- metrics ---------------------------------------------------------------------------------------


def _normalised(distribution: Mapping[int, float | Fraction], side: str) -> dict[int, float]:
    shares = {code: float(share) for code, share in distribution.items()}
    if not shares:
        raise ValueError(f"the {side} distribution is empty")
    bad = [share for share in shares.values() if not math.isfinite(share) or share < 0]
    if bad:
        raise ValueError(f"the {side} distribution has the share {bad[0]!r}; shares must be finite and >= 0")
    total = math.fsum(shares.values())
    if total <= 0:
        raise ValueError(f"the {side} distribution has no mass")
    return {code: share / total for code, share in shares.items()}


def expected_code(distribution: Mapping[int, float | Fraction]) -> float:
    shares = _normalised(distribution, "answer")
    return math.fsum(code * share for code, share in shares.items())


def scale_error(
    model: Mapping[int, float | Fraction], survey: Mapping[int, float | Fraction], scale: OptionScale
) -> float:
    """|E[model] - E[survey]| as a share of the scale's span: 0 for the same mean, 1 for opposite ends."""
    return abs(expected_code(model) - expected_code(survey)) / (scale.high - scale.low)


def js_divergence(p: Mapping[int, float | Fraction], q: Mapping[int, float | Fraction]) -> float:
    """Jensen-Shannon divergence in bits, over the union of the options of `p` and `q`; in [0, 1]."""
    p_shares, q_shares = _normalised(p, "first"), _normalised(q, "second")
    total = 0.0
    for code in p_shares.keys() | q_shares.keys():
        a, b = p_shares.get(code, 0.0), q_shares.get(code, 0.0)
        middle = (a + b) / 2
        total += (a * math.log2(a / middle) if a else 0.0) + (b * math.log2(b / middle) if b else 0.0)
    # Rounding can leave identical distributions a hair below 0 or disjoint ones a hair above 1.
    return min(1.0, max(0.0, total / 2))


@dataclass(frozen=True)
class QuestionScore:
    question: SurveyQuestion
    model: dict[int, float]
    model_mode: int
    mode_match: bool
    scale_error: float
    js_divergence: float
    invalid: int = 0  # sampled answers the parser could not read

    @property
    def culture(self) -> str:
        return self.question.culture

    @property
    def q_id(self) -> str:
        return self.question.q_id

    def as_row(self) -> dict[str, object]:
        return {
            "culture": self.culture,
            "q_id": self.q_id,
            "survey": _rounded(self.question.distribution, self.question.scale),
            "model": _rounded(self.model, self.question.scale),
            "survey_mode": self.question.mode,
            "model_mode": self.model_mode,
            "mode_match": self.mode_match,
            "scale_error": round(self.scale_error, SHARE_DECIMALS),
            "js_divergence": round(self.js_divergence, SHARE_DECIMALS),
            "invalid": self.invalid,
        }


def _rounded(distribution: Mapping[int, float | Fraction], scale: OptionScale) -> dict[str, float]:
    # Every point of the scale is listed, like labels.jsonl, so rows compare key by key.
    return {str(code): round(float(distribution.get(code, 0)), SHARE_DECIMALS) for code in scale.codes}


def score_question(question: SurveyQuestion, model: Mapping[int, float], invalid: int = 0) -> QuestionScore:
    """The three metrics of one (culture, question) for a model distribution over its options."""
    off_scale = [code for code in model if code not in question.scale]
    if off_scale:
        raise ValueError(
            f"{question.culture} Q{question.q_id}: model option {off_scale[0]} is not on the scale "
            f"{question.scale.low}..{question.scale.high}"
        )
    shares = _normalised(model, f"{question.culture} Q{question.q_id} model")
    model_mode = mode_label(shares)
    return QuestionScore(
        question=question,
        model=shares,
        model_mode=model_mode,
        mode_match=model_mode == question.mode,
        scale_error=scale_error(shares, question.distribution, question.scale),
        js_divergence=js_divergence(shares, question.distribution),
        invalid=invalid,
    )


@dataclass(frozen=True)
class ModelAnswer:
    """What the model gave for one question: a distribution, or None when no answer was valid."""

    distribution: Mapping[int, float] | None
    invalid: int = 0


@dataclass(frozen=True)
class Average:
    value: float
    ci: tuple[float, float]

    def as_row(self) -> dict[str, object]:
        return {"value": round(self.value, SHARE_DECIMALS), "ci": [round(x, SHARE_DECIMALS) for x in self.ci]}


@dataclass(frozen=True)
class CultureAlignment:
    culture: str
    scores: list[QuestionScore]
    skipped: list[str]  # the survey never asked them
    unanswered: list[str]  # the model gave no valid answer
    invalid_answers: int
    mode_match: Average | None  # None when no question was scored
    scale_error: Average | None
    js_divergence: Average | None

    def as_row(self) -> dict[str, object]:
        metrics = {
            "mode_match": self.mode_match,
            "scale_error": self.scale_error,
            "js_divergence": self.js_divergence,
        }
        return {
            "culture": self.culture,
            "scored": len(self.scores),
            "skipped": self.skipped,
            "unanswered": self.unanswered,
            "invalid_answers": self.invalid_answers,
            **{name: None if average is None else average.as_row() for name, average in metrics.items()},
        }


def score_culture(
    questions: CultureQuestions,
    answers: Mapping[str, ModelAnswer],
    *,
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> CultureAlignment:
    """Every scorable question of a culture scored, and the culture's averages with their intervals.

    `answers` holds one `ModelAnswer` per scorable question, keyed by q_id: restrict the seeds before
    building `questions`, not by leaving answers out.
    """
    expected = {question.q_id for question in questions.scorable}
    missing = sorted(expected - answers.keys())
    extra = sorted(answers.keys() - expected)
    if missing or extra:
        raise ValueError(
            f"{questions.culture}: answers must cover exactly the scorable questions; "
            f"missing {['Q' + q for q in missing]}, not scorable {['Q' + q for q in extra]}"
        )
    scores, unanswered = [], []
    for question in questions.scorable:
        answer = answers[question.q_id]
        if answer.distribution is None:
            unanswered.append(question.q_id)
        else:
            scores.append(score_question(question, answer.distribution, answer.invalid))
    averages = _question_averages(scores, samples=samples, seed=seed, level=level)
    return CultureAlignment(
        culture=questions.culture,
        scores=scores,
        skipped=list(questions.skipped),
        unanswered=unanswered,
        invalid_answers=sum(answers[q].invalid for q in expected),
        mode_match=averages.get("mode_match"),
        scale_error=averages.get("scale_error"),
        js_divergence=averages.get("js_divergence"),
    )


def _question_averages(
    scores: Sequence[QuestionScore], *, samples: int, seed: int, level: float
) -> dict[str, Average]:
    """Mean of each metric over the questions, with a bootstrap interval that resamples questions."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1, not {samples}")
    if not scores:
        return {}
    columns = {
        "mode_match": np.array([float(score.mode_match) for score in scores]),
        "scale_error": np.array([score.scale_error for score in scores]),
        "js_divergence": np.array([score.js_divergence for score in scores]),
    }
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(scores), size=(samples, len(scores)), dtype=np.int32)
    return {
        name: Average(float(values.mean()), percentile_interval(values[picks].mean(axis=1), level))
        for name, values in columns.items()
    }


# --- weak questions, as a seed file for `augment --seeds` -------------------------------------------


def _q_id_order(q_id: str) -> tuple[int, int, str]:
    # Numeric ids in numeric order (Q27 before Q122), any other id after them.
    return (0, int(q_id), "") if q_id.isdigit() else (1, 0, q_id)


def weak_questions(scores: Iterable[QuestionScore], culture: str, k: int) -> list[dict[str, str]]:
    """The `k` questions of `culture` furthest from the survey (largest JS divergence, then largest
    scale error, then question id), as seed-file rows `augment --seeds` reads, furthest first."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    mine = [score for score in scores if score.culture == culture]
    mine.sort(key=lambda s: (-s.js_divergence, -s.scale_error, _q_id_order(s.q_id)))
    return [
        {
            "topic": score.question.seed.topic,
            "q_id": score.q_id,
            "q_content": score.question.seed.q_content,
            "option": score.question.seed.option,  # as the seed file printed it; build-dataset repairs it
        }
        for score in mine[:k]
    ]


def write_weak_questions(path: Path, rows: Sequence[Mapping[str, str]]) -> None:
    if not rows:
        raise ValueError(f"no weak questions to write to {path}: a seed file needs at least one seed")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [dict(row) for row in rows])


# --- restricting the questions ---------------------------------------------------------------------

_VALIDATION_LINE = re.compile(r"^Validation holds out whole questions \([^)]*\): (?P<ids>.+)\.$")


def read_questions_file(path: Path, seeds: Sequence[Seed]) -> list[Seed]:
    """The seeds a `--questions FILE` names, in seed-file order.

    The file is either one question id per line (`Q27` or `27`; blank lines and `#` comments are
    skipped) or a seed file (JSON lines, such as `write_weak_questions` writes), whose q_ids are used.
    """
    lines = _read_lines(path, "questions file")
    content = [(number, line.strip()) for number, line in enumerate(lines, start=1)]
    content = [(number, line) for number, line in content if line and not line.startswith("#")]
    if not content:
        raise AlignmentDataError(f"questions file {path} names no questions")
    if content[0][1].startswith("{"):
        named = _seed_file_ids(path, lines)
    else:
        named = []
        for number, line in content:
            if re.search(r"[\s,;{}]", line):
                raise AlignmentDataError(
                    f"{path}:{number}: expected one question id per line (such as Q27), got {line!r}"
                )
            named.append((number, line.removeprefix("Q").removeprefix("q")))
    return _select_seeds(named, seeds, path)


def _seed_file_ids(path: Path, lines: Sequence[str]) -> list[tuple[int, str]]:
    try:
        listed = load_seeds(path)
    except SeedFileError as exc:
        raise AlignmentDataError(str(exc)) from None
    # load_seeds reads one seed from each non-blank line, in order.
    numbers = [number for number, line in enumerate(lines, start=1) if line.strip()]
    return [(number, seed.q_id) for number, seed in zip(numbers, listed, strict=True)]


def read_validation_questions(dataset_dir: Path, seeds: Sequence[Seed]) -> list[Seed]:
    """The seeds build-dataset held out for validation in `dataset_dir` (`--split validation DIR`).

    build-dataset records its split in the dataset card (README.md) in every output format, as the line
    "Validation holds out whole questions (F of them, ...): Q27, Q31." The openai, sharegpt and alpaca
    files carry no question ids, so the card is the one record every build has.
    """
    if not dataset_dir.is_dir():
        raise AlignmentDataError(f"dataset directory {dataset_dir} does not exist")
    if not (dataset_dir / LABELS_FILE).is_file():
        raise AlignmentDataError(f"{dataset_dir} is not a build-dataset output (it has no {LABELS_FILE})")
    card = dataset_dir / CARD_FILE
    for number, line in enumerate(_read_lines(card, "dataset card"), start=1):
        found = _VALIDATION_LINE.match(line.strip())
        if found:
            ids = [q_id.strip() for q_id in found.group("ids").split(", ")]
            named = [(number, q_id.removeprefix("Q")) for q_id in ids]
            return _select_seeds(named, seeds, card)
    raise AlignmentDataError(
        f"{card}: the dataset has no validation questions (build it with --val-fraction F to hold some out)"
    )


def _read_lines(path: Path, kind: str) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AlignmentDataError(f"{kind} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AlignmentDataError(f"{kind} {path} cannot be read: {exc}") from None


def _select_seeds(named: Sequence[tuple[int, str]], seeds: Sequence[Seed], path: Path) -> list[Seed]:
    known = {seed.q_id for seed in seeds}
    first_line: dict[str, int] = {}
    for number, q_id in named:
        if q_id not in known:
            raise AlignmentDataError(
                f"{path}:{number}: Q{q_id} is not one of the {len(seeds)} seed questions"
            )
        if q_id in first_line and first_line[q_id] != number:
            raise AlignmentDataError(f"{path}:{number}: Q{q_id} is already named on line {first_line[q_id]}")
        first_line.setdefault(q_id, number)
    return [seed for seed in seeds if seed.q_id in first_line]
