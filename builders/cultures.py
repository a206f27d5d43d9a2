"""Which WVS countries speak for which culture.

The shipped map (`data/cultures.json`) is the paper's: Arabic = Iraq + Jordan, Spanish = Argentina +
Mexico, one country for each other culture, Greek from its appendix. A user's file of the same shape
adds cultures, or replaces one of the same name (compared without case).
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_CULTURES_FILE = Path(__file__).resolve().parent.parent / "data" / "cultures.json"
ALL_CULTURES = "all"

CultureMap = dict[str, tuple[str, ...]]


class CultureError(ValueError):
    """An unknown culture, or a cultures file that is not `{"Culture": ["ISO3", ...]}`."""


def read_cultures_file(path: Path) -> CultureMap:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CultureError(f"cultures file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CultureError(f"cultures file {path} cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CultureError(f"cultures file {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict) or not data:
        raise CultureError(f'cultures file {path} must be a JSON object {{"Culture": ["ISO3", ...]}}')
    cultures: CultureMap = {}
    for name, countries in data.items():
        if not name.strip() or name.strip().casefold() == ALL_CULTURES:
            raise CultureError(f"cultures file {path}: {name!r} cannot name a culture")
        if (
            not isinstance(countries, list)
            or not countries
            or not all(isinstance(code, str) and code.strip() for code in countries)
        ):
            raise CultureError(
                f"cultures file {path}: {name!r} must map to a non-empty list of country codes"
            )
        cultures[name.strip()] = tuple(dict.fromkeys(code.strip() for code in countries))
    return cultures


def merge_cultures(base: CultureMap, extra: CultureMap) -> CultureMap:
    """`base` with the cultures of `extra` added; a name `base` already has (in any case) is replaced."""
    merged = dict(base)
    for name, countries in extra.items():
        for existing in [known for known in merged if known.casefold() == name.casefold()]:
            del merged[existing]
        merged[name] = countries
    return merged


def load_cultures(user_file: Path | None = None, shipped_file: Path = DEFAULT_CULTURES_FILE) -> CultureMap:
    shipped = read_cultures_file(shipped_file)
    return merge_cultures(shipped, read_cultures_file(user_file)) if user_file else shipped


def select_cultures(name: str, cultures: CultureMap) -> list[str]:
    """The cultures a `--culture` value names: one (matched without case), or all for CultureLLM-One."""
    wanted = name.strip().casefold()
    if wanted == ALL_CULTURES:
        return list(cultures)
    for known in cultures:
        if known.casefold() == wanted:
            return [known]
    raise CultureError(
        f"unknown culture {name!r}; known cultures: {', '.join(cultures)} (or '{ALL_CULTURES}')"
    )
