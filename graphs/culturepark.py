"""CulturePark for one culture and one WVS seed, as a LangGraph state machine.

    speak -(lines left)-> speak                      one line per step: a stopped dialogue goes on
          -(dialogue done)-> extract_opinions           at the line where it stopped
          -> verify_opinions -(contradictions)-> rewrite_contradictions -> verify_rewrites -> deduplicate
                             -(none)-> deduplicate -> END

Two personas talk (`mode` in: both of the culture and holding its attitude; cross: the culture's
delegate and an English-speaking counterpart). The attitude holders' opinions are extracted one line at
a time as first-person sentences, verified against the culture's attitude, contradicted ones rewritten
once and **the rewrite** verified again, and the kept ones clustered (k-means on embeddings) so each
cluster keeps the opinion nearest its centre.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.attitude import Attitude
from agents.dialogue import Persona, Utterance, parse_utterance, personas, render_turn
from agents.opinions import extract_opinions
from agents.providers.chat import ResilientChatModel
from agents.providers.embedders import Embedder
from agents.providers.local_compute import run_local
from agents.providers.resilience import MalformedResponse, ModelCallFailed, call_priority
from agents.text import normalize
from agents.verifier import OpinionVerifier, rewrite_opinion
from graphs.settings import CultureParkSettings
from storage.records import Seed


@dataclass(frozen=True)
class ParkItem:
    """One dialogue to hold: a culture, a seed and the culture's attitude to it."""

    culture: str
    seed: Seed
    attitude: Attitude
    context: str = ""  # a short description of the culture for the personas

    @property
    def key(self) -> str:
        return f"{self.culture}/{self.seed.q_id}"


def _default(name: str):
    """The default of a culturepark setting: the graph's parameters take them from the settings model."""
    return CultureParkSettings.model_fields[name].default


@dataclass(frozen=True)
class ParkParams:
    mode: Literal["in", "cross"] = _default("mode")
    style: Literal["guided", "free"] = _default("style")
    turns: int = _default("turns")  # lines per speaker
    clusters: int = _default("clusters")
    temperature: float = _default("temperature")
    sample_seed: int = _default("sample_seed")

    @classmethod
    def of(cls, settings: CultureParkSettings) -> ParkParams:
        return cls(
            mode=settings.mode,
            style=settings.style,
            turns=settings.turns,
            clusters=settings.clusters,
            temperature=settings.temperature,
            sample_seed=settings.sample_seed,
        )


@dataclass(frozen=True)
class ParkContext:
    generator: ResilientChatModel
    verifier: OpinionVerifier
    embedder: Embedder
    params: ParkParams = ParkParams()


class Opinion(NamedTuple):
    """An opinion as extracted, with its speaker and the dialogue line it came from."""

    speaker: str
    text: str
    line: int


class VerifiedOpinion(NamedTuple):
    speaker: str
    text: str  # what is kept: the opinion as extracted, or its verified rewrite
    verdict: str  # the first verdict, on the text as extracted
    rewritten: bool
    original: str  # the extracted text ("" when not rewritten)
    cluster: int


@dataclass(frozen=True)
class ParkStats:
    lines: int = 0
    extraction_calls_unusable: int = 0
    opinions_extracted: int = 0
    entailed: int = 0
    contradicted: int = 0
    unrelated: int = 0
    rewrites: int = 0
    rewrite_calls_unusable: int = 0
    rewrites_kept: int = 0
    rewrites_dropped: int = 0
    verified: int = 0
    clustered_out: int = 0
    kept: int = 0


@dataclass
class ParkInput:
    item: ParkItem


@dataclass
class ParkState:
    item: ParkItem
    transcript: list[Utterance] = field(default_factory=list)
    opinions: list[Opinion] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # one per opinion, on the text as extracted
    rewrites: list[Opinion] = field(default_factory=list)  # of the contradicted opinions, same order
    verified: list[VerifiedOpinion] = field(default_factory=list)
    kept: list[VerifiedOpinion] | None = None
    stats: ParkStats = field(default_factory=ParkStats)


@dataclass
class ParkOutput:
    item: ParkItem
    transcript: list[Utterance]
    kept: list[VerifiedOpinion]
    stats: ParkStats


def pair_of(item: ParkItem, params: ParkParams) -> tuple[Persona, Persona]:
    return personas(item.attitude, params.mode, item.context)


def draw(key: str, index: int, base: int) -> int:
    """A stable per-(item, call) sampling seed, so local runs repeat exactly."""
    return (zlib.crc32(f"{key}:{index}".encode()) + base) % (2**31)


def _unusable(exc: ModelCallFailed) -> bool:
    """The model answered, but never anything usable: the step goes on without that call's result."""
    return isinstance(exc.__cause__, MalformedResponse)


async def speak(state: ParkState, runtime: Runtime[ParkContext]) -> dict:
    ctx = runtime.context
    params = ctx.params
    pair = pair_of(state.item, params)
    line = len(state.transcript)
    speaker = line % 2
    completion = await ctx.generator.generate(
        render_turn(
            state.item.seed,
            state.item.attitude,
            pair,
            speaker,
            state.transcript,
            style=params.style,
            turn=line // 2,
            turns=params.turns,
        ),
        step="dialogue",
        parse=lambda raw: parse_utterance(raw, pair, speaker),
        temperature=params.temperature,
        max_tokens=160,
        sample_seed=draw(state.item.key, line, params.sample_seed),
    )
    utterance = Utterance(speaker=speaker, text=completion.parsed)
    return {
        "transcript": [*state.transcript, utterance],
        "stats": replace(state.stats, lines=state.stats.lines + 1),
    }


def after_line(state: ParkState, runtime: Runtime[ParkContext]) -> Literal["speak", "extract_opinions"]:
    return "speak" if len(state.transcript) < 2 * runtime.context.params.turns else "extract_opinions"


async def extract(state: ParkState, runtime: Runtime[ParkContext]) -> dict:
    ctx = runtime.context
    pair = pair_of(state.item, ctx.params)

    async def opinions_of(line: int, utterance: Utterance) -> list[Opinion] | None:
        persona = pair[utterance.speaker]
        previous = state.transcript[line - 1].text if line else None
        try:
            texts = await extract_opinions(
                ctx.generator,
                state.item.seed,
                persona,
                utterance.text,
                previous,
                sample_seed=draw(state.item.key, 1000 + line, ctx.params.sample_seed),
            )
        except ModelCallFailed as exc:
            if _unusable(exc):
                return None
            raise
        return [Opinion(persona.name, text, line) for text in texts]

    holders = [(i, u) for i, u in enumerate(state.transcript) if pair[u.speaker].holds_attitude]
    found = await asyncio.gather(*(opinions_of(i, u) for i, u in holders))
    opinions: list[Opinion] = []
    seen: set[str] = set()
    for batch in found:
        for opinion in batch or []:
            if normalize(opinion.text) not in seen:  # the same opinion voiced twice counts once
                seen.add(normalize(opinion.text))
                opinions.append(opinion)
    stats = replace(
        state.stats,
        extraction_calls_unusable=sum(batch is None for batch in found),
        opinions_extracted=len(opinions),
    )
    return {"opinions": opinions, "stats": stats}


async def verify(state: ParkState, runtime: Runtime[ParkContext]) -> dict:
    verdicts = await runtime.context.verifier.verify(state.item.attitude, [o.text for o in state.opinions])
    verified = [
        VerifiedOpinion(o.speaker, o.text, v, False, "", -1)
        for o, v in zip(state.opinions, verdicts, strict=True)
        if v == "entail"
    ]
    stats = replace(
        state.stats,
        entailed=verdicts.count("entail"),
        contradicted=verdicts.count("contradict"),
        unrelated=verdicts.count("unrelated"),
    )
    return {"verdicts": list(verdicts), "verified": verified, "stats": stats}


def after_verification(
    state: ParkState, runtime: Runtime[ParkContext]
) -> Literal["rewrite_contradictions", "deduplicate"]:
    return "rewrite_contradictions" if "contradict" in state.verdicts else "deduplicate"


async def rewrite(state: ParkState, runtime: Runtime[ParkContext]) -> dict:
    ctx = runtime.context
    contradicted = [o for o, v in zip(state.opinions, state.verdicts, strict=True) if v == "contradict"]

    async def rewritten(index: int, opinion: Opinion) -> Opinion | None:
        try:
            text = await rewrite_opinion(
                ctx.generator,
                state.item.attitude,
                opinion.text,
                sample_seed=draw(state.item.key, 2000 + index, ctx.params.sample_seed),
            )
        except ModelCallFailed as exc:
            if _unusable(exc):
                return None
            raise
        return opinion._replace(text=text)

    results = await asyncio.gather(*(rewritten(i, o) for i, o in enumerate(contradicted)))
    # Kept in the contradicted opinions' order; an unusable rewrite keeps the original, which the
    # second verification then judges (and, still contradicting, drops).
    rewrites = [r if r is not None else o for r, o in zip(results, contradicted, strict=True)]
    stats = replace(
        state.stats,
        rewrites=sum(r is not None for r in results),
        rewrite_calls_unusable=sum(r is None for r in results),
    )
    return {"rewrites": rewrites, "stats": stats}


async def verify_rewrites(state: ParkState, runtime: Runtime[ParkContext]) -> dict:
    # The second verification sees the rewrites, never the opinions as first extracted.
    verdicts = await runtime.context.verifier.verify(state.item.attitude, [r.text for r in state.rewrites])
    contradicted = [o for o, v in zip(state.opinions, state.verdicts, strict=True) if v == "contradict"]
    kept = [
        VerifiedOpinion(r.speaker, r.text, "contradict", True, o.text, -1)
        for o, r, v in zip(contradicted, state.rewrites, verdicts, strict=True)
        # A "rewrite" identical to the contradicting original is no repair, whatever the verifier says.
        if v == "entail" and normalize(r.text) != normalize(o.text)
    ]
    stats = replace(state.stats, rewrites_kept=len(kept), rewrites_dropped=len(contradicted) - len(kept))
    return {"verified": [*state.verified, *kept], "stats": stats}


async def deduplicate(state: ParkState, runtime: Runtime[ParkContext]) -> dict:
    from agents.dedup import cluster_representatives

    ctx = runtime.context
    verified = state.verified
    kept: list[VerifiedOpinion] = []
    if verified:
        with call_priority(-1):  # the item's last call: let it finish (and be written) first
            vectors = await ctx.embedder.embed([v.text for v in verified])
        # k-means runs on the local-compute thread: off the event loop, beside the local models.
        chosen = await run_local(
            cluster_representatives, vectors, ctx.params.clusters, random_state=ctx.params.sample_seed
        )
        kept = [verified[index]._replace(cluster=cluster) for index, cluster in chosen]
    stats = replace(
        state.stats, verified=len(verified), clustered_out=len(verified) - len(kept), kept=len(kept)
    )
    return {"kept": kept, "stats": stats}


def build_culturepark_graph():
    """The per-(culture, seed) graph, compiled without a checkpointer (the runner attaches one)."""
    graph = StateGraph(
        ParkState, context_schema=ParkContext, input_schema=ParkInput, output_schema=ParkOutput
    )
    graph.add_node("speak", speak)
    graph.add_node("extract_opinions", extract)
    graph.add_node("verify_opinions", verify)
    graph.add_node("rewrite_contradictions", rewrite)
    graph.add_node("verify_rewrites", verify_rewrites)
    graph.add_node("deduplicate", deduplicate)
    graph.add_edge(START, "speak")
    graph.add_conditional_edges("speak", after_line)
    graph.add_edge("extract_opinions", "verify_opinions")
    graph.add_conditional_edges("verify_opinions", after_verification)
    graph.add_edge("rewrite_contradictions", "verify_rewrites")
    graph.add_edge("verify_rewrites", "deduplicate")
    graph.add_edge("deduplicate", END)
    return graph.compile()


culturepark_graph = build_culturepark_graph()

# Everything a checkpoint of the graph holds besides builtins, and the records stored as rows.
CHECKPOINTED_TYPES: tuple[type, ...] = (
    ParkInput,
    ParkItem,
    Seed,
    Attitude,
    ParkStats,
    Utterance,
    Opinion,
    VerifiedOpinion,
)
CHECKPOINTED_ROWS: tuple[type, ...] = (Utterance, Opinion, VerifiedOpinion)
