"""The dataset card (`README.md` of a build): what is inside, where it came from, how to cite it."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from agents.providers.endpoints import redact_url
from builders.formats import by_split
from builders.opinions import OPINIONS_FILE, REASON
from builders.prompt import WVS_PROMPT

if TYPE_CHECKING:
    from builders.build import BuildResult
    from builders.examples import CultureSkips, Source

WVS_CITATION = (
    "Haerpfer, C., Inglehart, R., Moreno, A., Welzel, C., Kizilova, K., Diez-Medrano, J., Lagos, M., "
    "Norris, P., Ponarin, E. & Puranen, B. (eds.). 2022. *World Values Survey: Round Seven - Country-Pooled "
    "Datafile Version 5.0.* Madrid, Spain & Vienna, Austria: JD Systems Institute & WVSA Secretariat. "
    "doi:10.14281/18241.20"
)
CULTURELLM_CITATION = (
    "Li, C., Chen, M., Wang, J., Sitaram, S. & Xie, X. 2024. *CultureLLM: Incorporating Cultural "
    "Differences into Large Language Models.* NeurIPS 2024. arXiv:2402.10946"
)

_LABEL_RULES = {
    "mode": "the most frequent valid answer (a tie goes to the lowest code)",
    "mean": "the mean of the valid answers, rounded to the nearest option (halves round up)",
}


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it lies below it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def command_line(result: BuildResult) -> str:
    settings = result.settings
    words = ["python", "cli.py", "build-dataset", "--culture", settings.culture]
    if settings.samples:
        words += ["--samples", shown(settings.samples)]
    if settings.culturepark:
        words += ["--culturepark", shown(settings.culturepark)]
    words += ["--seeds", shown(settings.seeds), "--format", settings.format, "--label", settings.label.value]
    if settings.val_fraction:
        words += ["--val-fraction", f"{settings.val_fraction:g}"]
    for directory in settings.answers_dir:
        words += ["--answers-dir", shown(directory)]
    if settings.cultures_file:
        words += ["--cultures-file", shown(settings.cultures_file)]
    if settings.translate:
        words += ["--translate", settings.translate, "--translate-model", settings.translate_model or ""]
        if settings.base_url:
            words += ["--base-url", redact_url(settings.base_url) or ""]
    words += ["--out", shown(settings.out)]
    return shlex.join(words)


def _title(result: BuildResult) -> str:
    names = list(result.cultures)
    if result.settings.culture.strip().casefold() == "all":
        return f"CultureLLM-One: WVS-labelled fine-tuning set for {len(names)} cultures"
    return f"WVS-labelled fine-tuning set: {names[0]} culture"


def _lost(skips: CultureSkips) -> str:
    counts = [f"{skips.seeds} seed", f"{skips.augmented} augmented"]
    return ", ".join(counts + ([f"{skips.culturepark} culturepark"] if skips.culturepark else []))


def _culture_rows(result: BuildResult) -> list[str]:
    # The CulturePark column only appears in builds that read a CulturePark run.
    sources: list[Source] = ["seed", "augmented", *(["culturepark"] if result.settings.culturepark else [])]
    names = {"seed": "Seed", "augmented": "Augmented", "culturepark": "CulturePark"}
    rows = [
        "| Culture | Countries | Labelled questions | "
        + " | ".join(f"{names[source]} examples" for source in sources)
        + " | Skipped (no valid answers) |",
        "|---|---|---|" + "---|" * len(sources) + "---|",
    ]
    for culture, countries in result.cultures.items():
        mine = [example for example in result.examples if example.culture == culture]
        skips = result.example_set.skipped[culture]
        skipped = (
            ", ".join(f"Q{q_id}" for q_id in skips.q_ids) + f" ({_lost(skips)} examples)"
            if skips.q_ids
            else "none"
        )
        counts = " | ".join(str(sum(e.source == source for e in mine)) for source in sources)
        rows.append(
            f"| {culture} | {', '.join(countries)} | {len(result.seeds) - len(skips.q_ids)} / {len(result.seeds)} "
            f"| {counts} | {skipped} |"
        )
    return rows


def _sources(result: BuildResult) -> list[str]:
    settings = result.settings
    lines = [f"- Seeds: `{shown(settings.seeds)}` ({len(result.seeds)} WVS Wave 7 questions)."]
    if settings.samples:
        digest = hashlib.sha256(settings.samples.read_bytes()).hexdigest()
        lines.append(
            f"- Augmented samples (source run): `{shown(settings.samples)}`, sha256 `{digest}`, "
            f"{len(result.samples)} samples, {result.example_set.duplicates} repeats dropped."
        )
    else:
        lines.append("- Augmented samples: none; one example per seed.")
    if settings.culturepark:
        selected = result.selected_opinions
        digest = hashlib.sha256((settings.culturepark / OPINIONS_FILE).read_bytes()).hexdigest()
        lines.append(
            f"- CulturePark opinions (source run): `{shown(settings.culturepark / OPINIONS_FILE)}`, sha256 "
            f"`{digest}`, {len(result.opinions)} opinions, {sum(map(len, selected.texts.values()))} of them "
            f"distinct and of the cultures built, {selected.repeats} repeats dropped, "
            f"{len(selected.mismatched)} verified against another label than this build's (answered with "
            "this build's label)."
        )
    answers = ", ".join(
        f"{country} `{shown(found.path)}` ({found.respondents} respondents)"
        for country, found in result.answers.items()
    )
    lines.append(f"- Survey answers: {answers}.")
    return lines


def _first_culturepark_example(result: BuildResult) -> list[str]:
    """The first CulturePark example's answer, which differs from the seeds' answer; nothing without one."""
    found = next((example for example in result.examples if example.source == "culturepark"), None)
    if found is None:
        return []
    return ["The first CulturePark example's answer:", "", "```text", found.assistant, "```", ""]


def render_card(result: BuildResult) -> str:
    settings = result.settings
    splits = by_split(result.examples)
    first = result.examples[0]
    lines = [
        "---",
        f'pretty_name: "{_title(result)}"',
        "tags: [world-values-survey, culturellm, cultural-alignment]",
        "---",
        "",
        f"# {_title(result)}",
        "",
        "Chat fine-tuning examples that teach a model how people of a culture answer World Values Survey "
        "(Wave 7) questions, as in CultureLLM: every seed question and each of its augmented rewrites is asked, "
        "and the answer is the culture's label, computed from the survey answers of its countries.",
        *(
            [
                "CulturePark examples ask the seed question again and answer with the label followed by "
                f"`{REASON}` and an opinion of the culture, voiced in a CulturePark dialogue and verified to "
                "agree with the culture's attitude.",
            ]
            if settings.culturepark
            else []
        ),
        "",
        *_culture_rows(result),
        "",
        "## Sizes",
        "",
        "| Split | Examples | Questions |",
        "|---|---|---|",
        *(
            f"| {split} | {len(found)} | {len({example.q_id for example in found})} |"
            for split, found in splits.items()
        ),
        "",
    ]
    if result.validation_q_ids:
        lines += [
            f"Validation holds out whole questions ({settings.val_fraction:g} of them, chosen by a hash of the "
            f"question id): {', '.join(f'Q{q_id}' for q_id in result.validation_q_ids)}.",
            "",
        ]
    lines += [
        "## Files and format",
        "",
        f"Format `{settings.format}`: {', '.join(f'`{name}`' for name in result.written)}.",
        "`labels.jsonl` has one line per culture and question: `label`, `distribution` (share of each answer), "
        "`n_valid`, `countries`.",
        "",
        f"The prompt is `prompts/{WVS_PROMPT}.jinja`; the assistant answers with the label number. The first example:",
        "",
        "```text",
        *(f"[{message['role']}] {message['content']}" for message in first.messages),
        "```",
        "",
        *_first_culturepark_example(result),
        "## Labels",
        "",
        f"Method `{settings.label.value}`: {_LABEL_RULES[settings.label.value]}. Only real answers count: negative "
        "WVS codes (don't know, no answer, not asked, missing) and values off the option scale are excluded, and "
        "the summary rows of the answer files are not respondents. Each country of a culture weighs the same. "
        "A question that none of a culture's countries answered has no label, and its examples are skipped.",
        "",
        "## Sources",
        "",
        *_sources(result),
    ]
    if settings.translate:
        lines.append(
            f"- Translation: user prompts translated into {settings.translate} by `{settings.translate_model}` "
            f"(`prompts/translate_v1.jinja`); {result.translation_failures} examples dropped for want of a usable "
            "translation."
        )
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        command_line(result),
        "```",
        "",
        "## Citation",
        "",
        f"- World Values Survey: {WVS_CITATION}.",
        f"- CultureLLM: {CULTURELLM_CITATION}.",
        "",
    ]
    return "\n".join(lines)
