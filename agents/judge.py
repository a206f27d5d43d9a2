"""Semantic judges: decide whether a candidate sentence still means what the seed means.

- `EmbeddingJudge`: cosine similarity of sentence embeddings >= threshold (CultureLLM's judge).
- `LLMEquivalenceJudge`: an LLM's entail / contradict / unrelated verdict; only entailment passes.
  It catches inversions that embeddings score as near-identical ("men should have more right to a
  job than women" vs "women should have more right to a job than men").
- `JudgePanel`: several judges in order; a candidate must pass all, and later (costlier) judges
  only see what the earlier ones accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np

import prompts
from agents.json_answers import MalformedOutput, load_json_answer
from agents.providers.chat import ResilientChatModel
from agents.providers.embedders import Embedder
from agents.providers.factory import ModelServices, create_chat_model, create_embedder
from agents.providers.specs import parse_judge_spec


@dataclass(frozen=True)
class Verdict:
    score: float  # similarity to the seed in [0, 1] (1.0 / 0.0 for an LLM's yes / no)
    accepted: bool
    label: str = ""  # the LLM judge's relation, when there is one


class Judge(Protocol):
    spec: str

    async def judge(self, seed: str, candidates: Sequence[str]) -> list[Verdict]: ...

    async def aclose(self) -> None:
        """Release the network clients of the models behind the judge."""
        ...


class EmbeddingJudge:
    """Cosine similarity against the seed; the seed's embedding is computed once per seed."""

    def __init__(self, embedder: Embedder, threshold: float) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.spec = embedder.spec
        self._seed_vectors: dict[str, np.ndarray] = {}

    async def aclose(self) -> None:
        await self.embedder.aclose()

    async def _embed_with_seed(self, seed: str, candidates: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(seed vector, candidate vectors); the seed rides along in the first batch of its seed, so
        judging costs one embedding request per step, not two in a row."""
        if seed in self._seed_vectors:
            return self._seed_vectors[seed], await self.embedder.embed(candidates)
        vectors = await self.embedder.embed([seed, *candidates])
        self._seed_vectors[seed] = vectors[0]
        return vectors[0], vectors[1:]

    async def judge(self, seed: str, candidates: Sequence[str]) -> list[Verdict]:
        if not candidates:
            return []
        seed_vector, vectors = await self._embed_with_seed(seed, list(candidates))
        scores = np.clip(vectors @ seed_vector, -1.0, 1.0)
        # Rounded before comparing so the stored score and the decision can never disagree.
        rounded = [round(float(s), 4) for s in scores]
        return [Verdict(score=s, accepted=s >= self.threshold) for s in rounded]


def parse_equivalence_verdicts(raw: str, count: int) -> dict[int, str]:
    """Map 1-based candidate numbers to relations; anything missing or garbled is left out."""
    data = load_json_answer(raw)
    entries = data.get("verdicts") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise MalformedOutput("no verdict list in the judge's answer")
    found: dict[int, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        index, verdict = entry.get("index"), str(entry.get("verdict", "")).strip().lower()
        if (
            isinstance(index, int)
            and 1 <= index <= count
            and verdict in ("entail", "contradict", "unrelated")
        ):
            found.setdefault(index, verdict)
    return found


def _verdicts_of(raw: str, count: int) -> prompts.EquivalenceVerdicts:
    found = parse_equivalence_verdicts(raw, count)
    return prompts.EquivalenceVerdicts(
        verdicts=[prompts.EquivalenceVerdict(index=i, verdict=v) for i, v in found.items()]  # type: ignore[arg-type]
    )


class LLMEquivalenceJudge:
    """Asks an LLM for a relation per candidate, in batches; an unanswered candidate is rejected."""

    def __init__(self, model: ResilientChatModel, *, batch_size: int = 12) -> None:
        self.model = model
        self.spec = f"llm:{model.spec}"
        self.batch_size = batch_size

    async def aclose(self) -> None:
        await self.model.aclose()

    async def judge(self, seed: str, candidates: Sequence[str]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for start in range(0, len(candidates), self.batch_size):
            batch = list(candidates[start : start + self.batch_size])
            messages = prompts.template(prompts.EQUIVALENCE).render(seed=seed, candidates=batch)
            completion = await self.model.generate(
                messages,
                step="judge",
                schema=prompts.EquivalenceVerdicts,
                parse=partial(_verdicts_of, count=len(batch)),
                temperature=0.0,
                max_tokens=24 * len(batch) + 32,
            )
            assert isinstance(completion.parsed, prompts.EquivalenceVerdicts)
            relation = {v.index: v.verdict for v in completion.parsed.verdicts}
            for index in range(1, len(batch) + 1):
                label = relation.get(index, "unrelated")
                verdicts.append(
                    Verdict(score=1.0 if label == "entail" else 0.0, accepted=label == "entail", label=label)
                )
        return verdicts


class JudgePanel:
    """Judges applied in order; a candidate passes when every judge accepts it."""

    def __init__(self, judges: Sequence[Judge]) -> None:
        if not judges:
            raise ValueError("a judge panel needs at least one judge")
        self.judges = list(judges)
        self.spec = "+".join(j.spec for j in judges)

    async def aclose(self) -> None:
        for judge in self.judges:
            await judge.aclose()

    async def judge(self, seed: str, candidates: Sequence[str]) -> list[Verdict]:
        first, *rest = self.judges
        verdicts = await first.judge(seed, candidates)
        for judge in rest:
            open_ = [i for i, v in enumerate(verdicts) if v.accepted]
            later = await judge.judge(seed, [candidates[i] for i in open_])
            for i, verdict in zip(open_, later, strict=True):
                if not verdict.accepted:
                    # Keep the first judge's score (the reported similarity), record the veto.
                    verdicts[i] = Verdict(score=verdicts[i].score, accepted=False, label=verdict.label)
        return verdicts


def create_judge(
    specs: list[str], threshold: float, services: ModelServices, *, flag: str = "--judge"
) -> Judge:
    """One judge per spec, combined into a panel when several are given (cheapest first is up to you)."""
    judges: list[Judge] = []
    for text in specs:
        parsed = parse_judge_spec(text, flag=flag)
        if parsed.kind == "embed":
            judges.append(EmbeddingJudge(create_embedder(parsed.model, services, flag=flag), threshold))
        else:
            judges.append(LLMEquivalenceJudge(create_chat_model(parsed.model, services=services, flag=flag)))
    return judges[0] if len(judges) == 1 else JudgePanel(judges)


def judge_models(judge: Judge) -> tuple[list[ResilientChatModel], list[Embedder]]:
    """The chat models and embedders behind a judge (or a panel), for preflight checks."""
    judges = judge.judges if isinstance(judge, JudgePanel) else [judge]
    chats = [j.model for j in judges if isinstance(j, LLMEquivalenceJudge)]
    embedders = [j.embedder for j in judges if isinstance(j, EmbeddingJudge)]
    return chats, embedders
