"""The CulturePark graph with scripted models: dialogue roles, verification of rewrites, clustering,
resuming mid-dialogue, and questions a culture never asked."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest

from agents.attitude import attitude_of
from agents.providers.factory import ModelServices
from agents.providers.resilience import CallLimits
from agents.verifier import OpinionVerifier
from bench.mock_openai_server import embed
from graphs.culturepark import ParkContext, ParkItem, ParkParams, culturepark_graph
from graphs.culturepark_job import CultureParkJob
from graphs.runner import run_items
from graphs.settings import CultureParkSettings
from storage.records import Seed
from storage.run_store import RunStore, prepare_run_dir
from tests.fakes import scripted_model

SEED = Seed(
    q_id="27",
    topic="SOCIAL VALUES",
    q_content="One of my main goals in life has been to make my parents proud",
    option="1. Strongly agree 2. agree 3. Disagree 4. Strongly disagree",
)
ITEM = ParkItem("Arabic", SEED, attitude_of("Arabic", SEED, 1))
DIALOGUE = "You are taking part in a conversation about this question from the World Values Survey"
EXTRACT = "List the distinct opinions"
VERIFY = "Does each opinion agree with this attitude"
REWRITE = "Rewrite this opinion so that it agrees with the attitude"
REASONS = ["", "duty", "love", "", "faith", "tradition", "gratitude", "respect", "habit"]
NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+(.+?)\s*$", re.MULTILINE)


def texts(messages) -> str:
    return "\n".join(m.text for m in messages)


class HashEmbedder:
    """Hashed bag-of-words vectors: equal texts embed equally, word overlap means similarity."""

    spec = "embed:hash"

    async def embed(self, batch: list[str]) -> np.ndarray:
        return np.array([embed(t) for t in batch], dtype=np.float32)

    async def aclose(self) -> None:
        return None


class Script:
    """The generator's answers: numbered dialogue lines, one opinion per line (line 3 contradicts the
    attitude), and a rewrite of each contradiction that says `rewrite`."""

    def __init__(self, rewrite: str = "I strongly agree that making my parents proud guides my life") -> None:
        self.rewrite = rewrite
        self.dialogue_calls: list = []

    def __call__(self, messages, kwargs):
        text = texts(messages)
        if DIALOGUE in messages[0].text:
            self.dialogue_calls.append(messages)
            return (
                f"Line {len(self.dialogue_calls)}: family honour matters to me because my parents sacrificed"
            )
        if EXTRACT in text:
            number = int(re.findall(r'said: "Line (\d+)', text)[-1])  # the line to extract from
            if number == 3:
                return json.dumps({"opinions": ["I do not care whether my parents are proud of me"]})
            return json.dumps(
                {"opinions": [f"I work hard so that my parents are proud out of {REASONS[number]}"]}
            )
        if REWRITE in text:
            return self.rewrite
        raise AssertionError(f"unexpected request: {text[:200]}")


class Verifier:
    """Contradicts opinions saying "do not"; remembers every batch it was shown."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, messages, kwargs):
        text = messages[-1].text
        assert VERIFY in texts(messages)
        opinions = [body for _, body in NUMBERED.findall(text.split(VERIFY)[-1])] or [
            body for _, body in NUMBERED.findall(text)
        ]
        self.batches.append(opinions)
        verdicts = [
            {"index": i, "verdict": "contradict" if "do not" in o else "entail"}
            for i, o in enumerate(opinions, start=1)
        ]
        return json.dumps({"verdicts": verdicts})


def context(script, verifier, **params) -> ParkContext:
    limits = CallLimits(max_attempts=2, backoff_initial_s=0.0, backoff_max_s=0.0)
    return ParkContext(
        generator=scripted_model(script, limits=limits),
        verifier=OpinionVerifier(scripted_model(verifier, limits=limits)),
        embedder=HashEmbedder(),
        params=ParkParams(**{"turns": 3, **params}),
    )


async def run_graph(ctx: ParkContext) -> dict:
    return await culturepark_graph.ainvoke({"item": ITEM}, context=ctx)


async def test_the_second_verification_sees_the_rewrite_and_a_passing_rewrite_is_kept():
    script, verifier = Script(), Verifier()
    result = await run_graph(context(script, verifier, clusters=10))
    contradiction = "I do not care whether my parents are proud of me"
    assert contradiction in verifier.batches[0]
    assert verifier.batches[1] == [script.rewrite]  # the rewrite, never the original
    rewritten = [o for o in result["kept"] if o.rewritten]
    assert [(o.text, o.original, o.verdict) for o in rewritten] == [
        (script.rewrite, contradiction, "contradict")
    ]
    assert result["stats"].rewrites_kept == 1 and result["stats"].rewrites_dropped == 0


async def test_a_rewrite_that_still_contradicts_is_dropped():
    script, verifier = Script(rewrite="I do not think pride matters at all"), Verifier()
    result = await run_graph(context(script, verifier, clusters=10))
    assert verifier.batches[1] == ["I do not think pride matters at all"]
    assert not any(o.rewritten for o in result["kept"])
    assert all("do not" not in o.text for o in result["kept"])
    assert result["stats"].rewrites_dropped == 1 and result["stats"].contradicted == 1


@pytest.mark.parametrize("mode", ["in", "cross"])
@pytest.mark.parametrize("style", ["guided", "free"])
async def test_each_speaker_sees_its_own_lines_as_assistant_turns(mode, style):
    script = Script()
    await run_graph(context(script, Verifier(), mode=mode, style=style))
    assert len(script.dialogue_calls) == 6
    for line, messages in enumerate(script.dialogue_calls):
        roles = [m.type for m in messages]
        assert roles[0] == "system" and roles[-1] == "human"
        own = sum(1 for earlier in range(line) if earlier % 2 == line % 2)
        assert roles.count("ai") == own, (line, roles)
        assert all(a != b or a == "system" for a, b in zip(roles, roles[1:], strict=False)), (
            roles
        )  # alternating


async def test_in_mode_extracts_both_speakers_and_cross_mode_only_the_delegate():
    both = await run_graph(context(Script(), Verifier(), mode="in", clusters=10))
    assert both["stats"].opinions_extracted == 6  # every line of both holders
    assert len({o.speaker for o in both["kept"]}) == 2
    cross = await run_graph(context(Script(), Verifier(), mode="cross", clusters=10))
    assert cross["stats"].opinions_extracted == 3  # lines 1, 3 and 5: the delegate's
    assert len({o.speaker for o in cross["kept"]}) == 1


async def test_clustering_is_deterministic_and_keeps_at_most_k():
    first = await run_graph(context(Script(), Verifier(), clusters=2, turns=4))
    second = await run_graph(context(Script(), Verifier(), clusters=2, turns=4))
    assert len(first["kept"]) == 2
    assert first["kept"] == second["kept"]
    assert first["stats"].clustered_out == first["stats"].verified - 2


async def test_a_dialogue_stopped_mid_way_continues_at_the_line_where_it_stopped(tmp_path):
    out = prepare_run_dir(tmp_path / "run")
    healthy = Script()
    calls: list[int] = []

    def failing_at_line_five(messages, kwargs):
        if DIALOGUE in messages[0].text:
            calls.append(len(healthy.dialogue_calls))
            if len(healthy.dialogue_calls) == 4:
                return httpx.ReadTimeout("the provider stopped answering")
        return healthy(messages, kwargs)

    async def run(responder, resume):
        ctx = context(responder, Verifier())
        report = await run_items(
            [ITEM],
            CultureParkJob(ctx, near_duplicate=0.99),
            settings=CultureParkSettings(out=out),
            services=ModelServices(limits=CallLimits(max_attempts=2)),
            store=RunStore(out),
            concurrency=4,
            resume=resume,
        )
        return report, ctx

    report, _ = await run(failing_at_line_five, resume=False)
    assert report.status == "completed_with_failures"
    assert len(healthy.dialogue_calls) == 4  # lines 1-4 said, line 5 never answered

    second = Script()
    second.dialogue_calls.extend(healthy.dialogue_calls)  # numbering goes on where it stopped
    report, _ = await run(second, resume=True)
    assert report.status == "completed"
    resumed = second.dialogue_calls[4:]
    assert len(resumed) == 2  # only lines 5 and 6 were asked again
    assert (
        sum(m.type != "system" for m in resumed[0]) == 5
    )  # the request to open, then the four lines before it
    dialogue = json.loads((out / "dialogues.jsonl").read_text().splitlines()[0])
    assert [t["text"].split(":")[0] for t in dialogue["turns"]] == [f"Line {i}" for i in range(1, 7)]


def test_questions_a_culture_never_asked_are_skipped_and_listed(tmp_path):
    from commands.culturepark import dialogue_items
    from storage.seeds import DEFAULT_SEEDS, load_seeds

    never = {s.q_id for s in load_seeds(DEFAULT_SEEDS)} & {"36", "226"}
    items, skipped = dialogue_items(CultureParkSettings(culture="Arabic"))
    assert never and set(skipped["Arabic"]) >= never
    assert not {i.seed.q_id for i in items} & set(skipped["Arabic"])
    assert all(i.attitude.label is not None for i in items)
