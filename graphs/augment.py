"""CultureLLM semantic data augmentation for one seed, as a LangGraph state machine.

    generate_paraphrases -> judge_paraphrases -(fewer than n kept, rounds left)-> generate_paraphrases
                                              -(otherwise)-> propose_synonyms -> judge_substitutions
                                              -> select_samples -> END

Candidates that mirror or negate the seed are dropped by a lexical guard (agents/guards.py) before
the judge sees them. Nodes are small async functions: typed state in, the fields they change out. The models and
settings arrive through the runtime context; limits and retries live in the models themselves.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, replace
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.guards import MeaningGuard
from agents.judge import Judge
from agents.paraphraser import parse_paraphrases, render_paraphrase_request
from agents.providers.chat import ResilientChatModel
from agents.providers.resilience import MalformedResponse, ModelCallFailed, call_priority
from agents.selector import ScoredCandidate, select_samples
from agents.substitutor import (
    Substitution,
    lexicon_substitutions,
    parse_substitutions,
    render_synonym_request,
    synonym_schema,
)
from agents.text import normalize
from agents.thesaurus import Thesaurus
from graphs.settings import AugmentSettings
from graphs.state import AugmentInput, AugmentOutput, AugmentState, JudgedCandidate


def _default(name: str):
    """The default of an augment setting: the graph's parameters take them from the one settings model."""
    return AugmentSettings.model_fields[name].default


@dataclass(frozen=True)
class AugmentParams:
    n: int = _default("n")
    m: int = _default("m")
    max_rounds: int = 2
    max_synonyms: int = _default("max_synonyms")
    max_substitutions: int = _default("max_substitutions")
    temperature: float = _default("temperature")
    sample_seed: int = _default("sample_seed")
    inversion_guard: bool = _default("inversion_guard")
    # Where stage-2 synonyms come from: the generator (CultureLLM), the offline WordNet thesaurus
    # (no model call), or the generator with each synonym confirmed by WordNet.
    synonym_source: Literal["generator", "wordnet", "generator+wordnet"] = "generator"
    # Every content word of a candidate must match one of the seed (see agents.guards.MeaningGuard).
    strict_meaning: bool = False

    @classmethod
    def of(cls, settings: AugmentSettings) -> AugmentParams:
        """The graph parameters of a run's validated settings (generator-dependent defaults resolved)."""
        assert settings.max_rounds is not None and settings.strict_meaning is not None
        return cls(
            n=settings.n,
            m=settings.m,
            max_rounds=settings.max_rounds,
            max_synonyms=settings.max_synonyms,
            max_substitutions=settings.max_substitutions,
            temperature=settings.temperature,
            sample_seed=settings.sample_seed,
            inversion_guard=settings.inversion_guard,
            synonym_source=settings.synonyms,  # type: ignore[arg-type]
            strict_meaning=settings.strict_meaning,
        )


@dataclass(frozen=True)
class AugmentContext:
    generator: ResilientChatModel
    judge: Judge
    params: AugmentParams = AugmentParams()
    # The lexical checks before judging (None: no guard); the thesaurus behind WordNet synonyms.
    guard: MeaningGuard | None = MeaningGuard()
    thesaurus: Thesaurus | None = None


def _guarded(texts: list[str], seed: str, ctx: AugmentContext) -> tuple[list[str], int]:
    """Texts that pass the meaning guard, and how many it dropped."""
    if ctx.guard is None or not ctx.params.inversion_guard:
        return texts, 0
    kept = [t for t in texts if ctx.guard.reason(t, seed) is None]
    return kept, len(texts) - len(kept)


def _draw(seed_id: str, round_: int, base: int) -> int:
    """A stable per-(seed, round) sampling seed, so local runs repeat exactly."""
    return (zlib.crc32(f"{seed_id}:{round_}".encode()) + base) % (2**31)


async def generate_paraphrases(state: AugmentState, runtime: Runtime[AugmentContext]) -> dict:
    ctx = runtime.context
    seed = state.seed.q_content
    round_ = state.stats.paraphrase_rounds + 1
    # Re-asks request only the missing number: output tokens are the cost that matters.
    wanted = ctx.params.n - len(state.paraphrases)
    completion = await ctx.generator.generate(
        render_paraphrase_request(seed, wanted),
        step="paraphrase",
        temperature=ctx.params.temperature,
        max_tokens=48 * wanted + 64,
        sample_seed=_draw(state.seed.q_id, round_, ctx.params.sample_seed),
    )
    known = {normalize(t) for t in state.seen}
    fresh = [t for t in parse_paraphrases(completion.text, seed) if normalize(t) not in known]
    pending, guarded = _guarded(fresh, seed, ctx)
    stats = replace(
        state.stats,
        paraphrase_rounds=round_,
        paraphrases_generated=state.stats.paraphrases_generated + len(fresh),
        paraphrases_guarded=state.stats.paraphrases_guarded + guarded,
    )
    return {"pending": pending, "seen": [*state.seen, *fresh], "stats": stats}


async def judge_paraphrases(state: AugmentState, runtime: Runtime[AugmentContext]) -> dict:
    ctx = runtime.context
    verdicts = await ctx.judge.judge(state.seed.q_content, state.pending)
    room = ctx.params.n - len(state.paraphrases)
    accepted = sorted(
        (
            ScoredCandidate(text=text, stage="paraphrase", base=text, similarity=v.score)
            for text, v in zip(state.pending, verdicts, strict=True)
            if v.accepted
        ),
        key=lambda c: (-c.similarity, c.text),
    )[:room]
    stats = replace(
        state.stats,
        paraphrases_accepted=state.stats.paraphrases_accepted + len(accepted),
        paraphrases_rejected=state.stats.paraphrases_rejected + sum(not v.accepted for v in verdicts),
    )
    judged = [
        JudgedCandidate(text=t, stage="paraphrase", base=t, similarity=v.score, accepted=v.accepted)
        for t, v in zip(state.pending, verdicts, strict=True)
    ]
    return {
        "pending": [],
        "paraphrases": [*state.paraphrases, *accepted],
        "judged": [*state.judged, *judged],
        "stats": stats,
    }


def after_paraphrase_judge(
    state: AugmentState, runtime: Runtime[AugmentContext]
) -> Literal["generate_paraphrases", "propose_synonyms"]:
    params = runtime.context.params
    if len(state.paraphrases) < params.n and state.stats.paraphrase_rounds < params.max_rounds:
        return "generate_paraphrases"
    return "propose_synonyms"


def substitution_bases(state: AugmentState, n: int) -> list[str]:
    """The kept paraphrases, plus the seed itself while fewer than n were kept.

    The seed is equivalent to itself, so its substitutions are legitimate samples; adding it only
    when stage 1 fell short keeps the synonym calls at most n per seed.
    """
    bases = [c.text for c in state.paraphrases]
    if len(bases) < n:
        bases.append(state.seed.q_content)
    return bases


async def propose_synonyms(state: AugmentState, runtime: Runtime[AugmentContext]) -> dict:
    ctx = runtime.context
    params = ctx.params
    bases = substitution_bases(state, params.n)
    check = None
    if params.synonym_source != "generator":
        if ctx.thesaurus is None:
            raise ValueError(f"synonym source {params.synonym_source!r} needs a thesaurus in the context")
        check = ctx.thesaurus.are_synonyms

    async def substitutions_of(index: int, base: str) -> tuple[str, list[Substitution] | None]:
        if params.synonym_source == "wordnet":
            assert ctx.thesaurus is not None
            found = lexicon_substitutions(
                base, ctx.thesaurus, max_synonyms=params.max_synonyms, max_candidates=params.max_substitutions
            )
            return base, found
        try:
            completion = await ctx.generator.generate(
                render_synonym_request(base, ctx.params.max_synonyms),
                step="synonyms",
                schema=synonym_schema(base, ctx.params.max_synonyms),
                parse=lambda raw: parse_substitutions(
                    raw,
                    base,
                    max_synonyms=ctx.params.max_synonyms,
                    max_candidates=ctx.params.max_substitutions,
                    check=check,
                ),
                temperature=min(ctx.params.temperature, 0.3),
                max_tokens=320,
                sample_seed=_draw(state.seed.q_id, 100 + index, ctx.params.sample_seed),
            )
        except ModelCallFailed as exc:
            if isinstance(exc.__cause__, MalformedResponse):
                return base, None  # the model never produced a usable table; other bases still count
            raise
        return base, completion.parsed

    results = await asyncio.gather(*(substitutions_of(i, b) for i, b in enumerate(bases)))
    candidates: list[ScoredCandidate] = []
    generated = guarded = 0
    for base, substitutions in results:
        if substitutions is None:
            continue
        texts = [s.text for s in substitutions]
        kept, dropped = _guarded(texts, state.seed.q_content, ctx)
        generated, guarded = generated + len(texts), guarded + dropped
        candidates.extend(ScoredCandidate(text=t, stage="synonym", base=base, similarity=0.0) for t in kept)
    stats = replace(
        state.stats,
        synonym_calls_failed=state.stats.synonym_calls_failed + sum(s is None for _, s in results),
        substitutions_generated=state.stats.substitutions_generated + generated,
        substitutions_guarded=state.stats.substitutions_guarded + guarded,
    )
    return {"substitutions": candidates, "stats": stats}


# A seed's last call (the judge's) goes ahead of other seeds' earlier calls when slots are scarce,
# so seeds finish (and are written to samples.jsonl) steadily through the run: on the 50-seed
# benchmark the first seed finished at 1.3 s of 3.1 and one every ~0.1 s after, against all 50 in
# the last 0.6 s in first-come order, at the same total time. A stopped run then has more seeds done.
FINAL_CALL_PRIORITY = -1


async def judge_substitutions(state: AugmentState, runtime: Runtime[AugmentContext]) -> dict:
    with call_priority(FINAL_CALL_PRIORITY):
        verdicts = await runtime.context.judge.judge(
            state.seed.q_content, [c.text for c in state.substitutions]
        )
    accepted = [
        c._replace(similarity=v.score)
        for c, v in zip(state.substitutions, verdicts, strict=True)
        if v.accepted
    ]
    stats = replace(
        state.stats,
        substitutions_accepted=state.stats.substitutions_accepted + len(accepted),
        substitutions_rejected=state.stats.substitutions_rejected + len(verdicts) - len(accepted),
    )
    judged = [
        JudgedCandidate(text=c.text, stage="synonym", base=c.base, similarity=v.score, accepted=v.accepted)
        for c, v in zip(state.substitutions, verdicts, strict=True)
    ]
    return {"substitutions": [], "variants": accepted, "judged": [*state.judged, *judged], "stats": stats}


async def select(state: AugmentState, runtime: Runtime[AugmentContext]) -> dict:
    pool = [*state.paraphrases, *state.variants]
    return {"samples": select_samples(pool, state.seed.q_content, runtime.context.params.m)}


def build_augment_graph():
    """The per-seed graph, compiled without a checkpointer (the runner attaches one to a copy)."""
    graph = StateGraph(
        AugmentState, context_schema=AugmentContext, input_schema=AugmentInput, output_schema=AugmentOutput
    )
    graph.add_node("generate_paraphrases", generate_paraphrases)
    graph.add_node("judge_paraphrases", judge_paraphrases)
    graph.add_node("propose_synonyms", propose_synonyms)
    graph.add_node("judge_substitutions", judge_substitutions)
    graph.add_node("select_samples", select)
    graph.add_edge(START, "generate_paraphrases")
    graph.add_edge("generate_paraphrases", "judge_paraphrases")
    graph.add_conditional_edges("judge_paraphrases", after_paraphrase_judge)
    graph.add_edge("propose_synonyms", "judge_substitutions")
    graph.add_edge("judge_substitutions", "select_samples")
    graph.add_edge("select_samples", END)
    return graph.compile()


augment_graph = build_augment_graph()
