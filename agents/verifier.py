"""CulturePark's verification of extracted opinions against the culture's attitude, and the one rewrite
a contradicting opinion gets.

The verifier answers the augment LLM judge's JSON (`prompts.EquivalenceVerdicts`) and reuses its
parser, so a verdict means the same in both pipelines: "entail" keeps an opinion, "contradict" sends it
to the rewriter, "unrelated" (and an opinion the model left without a verdict) drops it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

import prompts
from agents.attitude import Attitude
from agents.judge import parse_equivalence_verdicts
from agents.providers.chat import ResilientChatModel

_VERDICT_TOKENS = 24  # one {"index": n, "verdict": "..."} entry
_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:rewritten|revised|new|corrected)?\s*(?:opinion|version|answer|rewrite|text)?\s*(?:\*\*)?\s*:\s*",
    re.IGNORECASE,
)
_CHATTER = re.compile(r"^(?:here(?:'s| is| are)|sure|certainly|of course|okay|ok\b)", re.IGNORECASE)
_QUOTES = "\"'“”‘’`«»"


def render_verification(attitude: Attitude, opinions: Sequence[str]) -> list[prompts.Message]:
    return prompts.template(prompts.CULTUREPARK_VERIFY).render(
        attitude=attitude.statement, opinions=[" ".join(o.split()) for o in opinions]
    )


class OpinionVerifier:
    """An LLM's entail / contradict / unrelated verdict per opinion, asked in batches."""

    def __init__(self, model: ResilientChatModel, *, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        self.model = model
        self.spec = f"llm:{model.spec}"
        self.batch_size = batch_size

    async def aclose(self) -> None:
        await self.model.aclose()

    async def verify(self, attitude: Attitude, opinions: Sequence[str]) -> list[prompts.Relation]:
        """One verdict per opinion, in order; raises `ModelCallFailed` when a batch never parses."""
        verdicts: list[prompts.Relation] = []
        for start in range(0, len(opinions), self.batch_size):
            batch = list(opinions[start : start + self.batch_size])
            completion = await self.model.generate(
                render_verification(attitude, batch),
                step="verify",
                schema=prompts.EquivalenceVerdicts,
                parse=partial(parse_equivalence_verdicts, count=len(batch)),
                temperature=0.0,
                max_tokens=_VERDICT_TOKENS * len(batch) + 32,
            )
            found: dict[int, prompts.Relation] = completion.parsed
            verdicts.extend(found.get(index, "unrelated") for index in range(1, len(batch) + 1))
        return verdicts


def render_rewrite(attitude: Attitude, opinion: str) -> list[prompts.Message]:
    return prompts.template(prompts.CULTUREPARK_REWRITE).render(
        attitude=attitude.statement, opinion=" ".join(opinion.split())
    )


def parse_rewrite(raw: str) -> str:
    """The rewritten opinion: the first line with text, without labels ("Rewritten opinion:"), chatter
    ("Here is ...") or quotes; later lines are the model explaining itself. Raises ValueError when no text is left."""
    for line in (raw or "").splitlines():
        line = line.strip()
        if _CHATTER.match(line):
            # "Here is the rewritten opinion: I ..." carries the answer after its colon, if anywhere.
            line = line.partition(":")[2].strip()
        line = _LABEL.sub("", line, count=1).strip()
        if not line:
            continue
        line = line.strip("*_").strip()
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
            line = line[1:-1].strip()
        if re.search(r"\w", line):
            return line
    raise ValueError(f"no rewritten opinion in the answer: {(raw or '')[:80]!r}")


async def rewrite_opinion(
    model: ResilientChatModel, attitude: Attitude, opinion: str, *, sample_seed: int = 0
) -> str:
    """`opinion` rewritten once to agree with `attitude` (the caller verifies the result again)."""
    completion = await model.generate(
        render_rewrite(attitude, opinion),
        step="rewrite",
        parse=parse_rewrite,
        # Low, to stay close to the opinion, but not zero: an unusable plain-text answer is asked
        # again, and a greedy retry would only repeat it.
        temperature=0.3,
        max_tokens=96,
        sample_seed=sample_seed,
    )
    return completion.parsed
